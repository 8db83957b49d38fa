"""Where the operator's checks before traffic (golden samples, holdout gate) reach the
stable and canary predictors, and where they read the versions' files.

Files: the mounted `--model-repo` when there is one, else the InferenceServices'
`storageUri` through KServe's storage library. Predictors: the URLs KServe publishes in
the InferenceService status (`adapters.kserve_status`), else the operator's
`--predictor-url` template. The InferenceServices are the tick's one list of them, not
read again.
"""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from modelcanary.adapters import factory
from modelcanary.adapters.file_cache import operator_cache
from modelcanary.adapters.kserve_router import KSERVE, Services, listed
from modelcanary.adapters.kserve_status import predictor_address, revision_urls, storage_uri
from modelcanary.adapters.kube_client import KubeError, Resource
from modelcanary.adapters.repo_reader import LocalRepository, RepositoryReader
from modelcanary.adapters.storage_reader import ByVersion, StorageRepository
from modelcanary.rollout.spec import RolloutSpec

NO_REPOSITORY = "no --model-repo and no storageUri on the InferenceService"
Target = tuple[tuple[str, str], RepositoryReader | None]


def check_target(
    api: client.CustomObjectsApi,
    services: Services | KubeError,
    local: tuple[Path | None, str],
    mode: factory.KubeMode,
    namespace: str,
    isvc: str,
    spec: RolloutSpec,
) -> Target:
    """((stable URL, canary URL), reader); `services` the tick's InferenceServices (or why
    they could not be listed); `local` is (--model-repo, --predictor-url). The reader is
    None when no repository is known."""
    if isinstance(services, KubeError):
        raise services
    model_repo, template = local
    versions = (spec.stable.version, spec.canary.version)
    if mode == "standard":
        found = [
            listed(
                services,
                Resource(
                    api, *KSERVE, namespace, factory.predictor_service(mode, isvc, spec.model, v)
                ),
            )
            for v in versions
        ]
        published = (predictor_address(found[0]), predictor_address(found[1]))
        uris = {v: storage_uri(body) for v, body in zip(versions, found, strict=True)}
    else:
        body = listed(services, Resource(api, *KSERVE, namespace, isvc))
        published = revision_urls(body)
        uris = dict.fromkeys(versions, storage_uri(body))
    stable_url, canary_url = (
        url
        or template.format(
            isvc=factory.predictor_service(mode, isvc, spec.model, version), namespace=namespace
        )
        for url, version in zip(published, versions, strict=True)
    )
    repo: RepositoryReader | None = None
    if model_repo is not None:
        repo = LocalRepository(model_repo)
    elif all(uris.values()):
        stores = {v: StorageRepository(str(uri), cache=operator_cache()) for v, uri in uris.items()}
        repo = ByVersion(stores)
    return (stable_url, canary_url), repo
