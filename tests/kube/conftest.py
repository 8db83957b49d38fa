from tests.support.kube_fixtures import apiserver, namespace  # noqa: F401
