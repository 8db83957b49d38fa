from tests.support.kube_crds import crds, modelcanary_crd, upstream_crds  # noqa: F401
from tests.support.kube_fixtures import apiserver, module_namespace, namespace  # noqa: F401
