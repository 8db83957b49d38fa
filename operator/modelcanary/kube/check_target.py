"""Where the operator's checks before traffic (golden samples, holdout gate) reach the
stable and canary predictors, and where they read the versions' files.

Files: the mounted `--model-repo` when there is one, else the InferenceServices'
`storageUri` through KServe's storage library. Predictors: the URLs KServe publishes in
the InferenceService status (`adapters.kserve_status`), else the operator's
`--predictor-url` template.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from modelcanary.adapters import factory
from modelcanary.adapters.kserve_router import KSERVE
from modelcanary.adapters.kserve_status import predictor_address, revision_urls, storage_uri
from modelcanary.adapters.repo_reader import LocalRepository, RepositoryReader
from modelcanary.adapters.storage_reader import ByVersion, StorageRepository
from modelcanary.kube.api import Resource
from modelcanary.rollout.spec import RolloutSpec

NO_REPOSITORY = "no --model-repo and no storageUri on the InferenceService"
Target = tuple[tuple[str, str], RepositoryReader | None]


def check_target(
    api: client.CustomObjectsApi,
    local: tuple[Path | None, str],
    mode: factory.KubeMode,
    namespace: str,
    isvc: str,
    spec: RolloutSpec,
) -> Target:
    """((stable URL, canary URL), reader); `local` is (--model-repo, --predictor-url).
    The reader is None when no repository is known."""
    model_repo, template = local
    versions = (spec.stable.version, spec.canary.version)
    if mode == "standard":
        found = [
            Resource(api, *KSERVE, namespace,
                     factory.predictor_service(mode, isvc, spec.model, v)).get()
            for v in versions
        ]  # fmt: skip
        published = (predictor_address(found[0]), predictor_address(found[1]))
        uris = {v: storage_uri(body) for v, body in zip(versions, found, strict=True)}
    else:
        body = Resource(api, *KSERVE, namespace, isvc).get()
        published = revision_urls(body)
        uris = dict.fromkeys(versions, storage_uri(body))
    stable_url, canary_url = (
        url or template.format(
            isvc=factory.predictor_service(mode, isvc, spec.model, version), namespace=namespace
        )
        for url, version in zip(published, versions, strict=True)
    )  # fmt: skip
    repo: RepositoryReader | None = None
    if model_repo is not None:
        repo = LocalRepository(model_repo)
    elif all(uris.values()):
        repo = ByVersion({v: StorageRepository(str(uri)) for v, uri in uris.items()})
    return (stable_url, canary_url), repo
