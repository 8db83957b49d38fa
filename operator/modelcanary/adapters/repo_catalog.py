"""What the cluster comparator needs to compare two versions (output kinds, tolerances,
stable's reference profile), read through a repository reader: the model repository
mounted in its pod, or the InferenceService's storageUri through KServe's storage library
(modelcanary.adapters.storage_reader)."""

from __future__ import annotations

import json
from pathlib import Path

from modelcanary.adapters.repo_reader import (
    CheckUnavailable,
    LocalRepository,
    RepositoryReader,
    pinned_file,
    version_manifest,
)
from modelcanary.adapters.storage_reader import StorageRepository
from modelcanary.errors import UsageError, one_line
from modelcanary.modelrepo.drift import InputProfile
from modelcanary.shadow.catalog import pair_of
from modelcanary.shadow.pairs import VersionPair


def repository_reader(where: str) -> RepositoryReader:
    """A local directory (a path or file://), else a storage URI (s3://, gs://, pvc://...)."""
    if "://" not in where:
        return LocalRepository(Path(where))
    return StorageRepository(where)


def reader_pair(reader: RepositoryReader, model: str, stable: str, canary: str) -> VersionPair:
    """The comparison of `canary` with `stable` as their manifests declare it; UsageError
    when a manifest or stable's pinned profile cannot be read."""
    try:
        a, b = (version_manifest(reader, model, v) for v in (stable, canary))
        profile = None
        if a.profile_file is not None:
            data = json.loads(pinned_file(reader, a, a.profile_file))
            profile = InputProfile.from_json(data)
    except CheckUnavailable as exc:
        raise UsageError(str(exc)) from None
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(
            f"{model}:{stable}: not a readable input profile: {one_line(exc)}"
        ) from None
    return pair_of(a, b, profile)
