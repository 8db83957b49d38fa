"""A repository reader on an InferenceService's `storageUri`: the version's files are
fetched with KServe's own storage library (`kserve-storage`), so the operator reads from
every storage form KServe's storage initializer reads (s3, gs, azure, http(s), hdfs,
a local path or `file://`, and `pvc://` through the claim mounted at `/mnt/pvc/<claim>`),
with the credentials it takes (environment variables such as AWS_ACCESS_KEY_ID,
AWS_ENDPOINT_URL, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_ACCESS_KEY, or
STORAGE_CONFIG).

Each read downloads one file, `{storageUri}/{model}/{version}/{name}`, into a temporary
directory removed before it returns; the bytes come back as stored (an archive, such as an
`.npz`, is never unpacked: a file the library would unpack is refused). A file its
manifest pins is kept in a `FileCache` (the operator's: `operator_cache()`) and not
downloaded again while the manifest pins the same bytes; the manifest itself is read
every time, so a version exported again is read again.
"""

from __future__ import annotations

import logging
import mimetypes
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kserve_storage import Storage

from modelcanary.adapters.file_cache import FileCache
from modelcanary.adapters.repo_reader import CheckUnavailable, RepositoryReader
from modelcanary.errors import one_line
from modelcanary.modelrepo.manifest import sha256_bytes

PVC_PREFIX = "pvc://"
PVC_MOUNTS = "/mnt/pvc"  # where the operator mounts a claim: /mnt/pvc/<claim>
ARCHIVES = ("application/zip", "application/x-tar")
# kserve-storage logs every copy, and every failure it raises; a failed read is reported
# once, as the check's one-line CheckUnavailable.
logging.getLogger("storage.initializer").setLevel(logging.CRITICAL)


def file_uri(root: str, model: str, version: str, name: str) -> str:
    """The URI of one file of a version under a repository root URI."""
    return f"{root.rstrip('/')}/{model}/{version}/{name}"


def local_form(uri: str, pvc_mounts: str = PVC_MOUNTS) -> str:
    """`pvc://CLAIM/PATH` as the path where the claim is mounted; other forms unchanged."""
    if uri.startswith(PVC_PREFIX):
        return f"{pvc_mounts.rstrip('/')}/{uri.removeprefix(PVC_PREFIX)}"
    return uri


@dataclass(frozen=True)
class StorageRepository:
    """A model repository at a storage URI (the Triton model repository root)."""

    root: str
    pvc_mounts: str = PVC_MOUNTS
    cache: FileCache | None = None

    def read(self, model: str, version: str, name: str, sha256: str | None = None) -> bytes:
        uri = file_uri(self.root, model, version, name)
        if mimetypes.guess_type(name)[0] in ARCHIVES:
            raise CheckUnavailable(f"{uri}: KServe's storage library would unpack {name}")
        kept = self.cache.get(uri, sha256) if self.cache and sha256 else None
        if kept is not None:
            return kept
        with tempfile.TemporaryDirectory(prefix="modelcanary-read-") as out:
            try:
                where = Storage.download(local_form(uri, self.pvc_mounts), out)
                data = (Path(where) / name).read_bytes()
            except Exception as exc:  # the library raises bare Exceptions for many causes
                raise CheckUnavailable(f"{uri}: {one_line(exc)}") from None
        if self.cache and sha256 and sha256_bytes(data) == sha256:
            self.cache.put(uri, sha256, data)
        return data


@dataclass(frozen=True)
class ByVersion:
    """Each version read from its own repository (Standard mode: one InferenceService,
    and so one storageUri, per version)."""

    readers: Mapping[str, RepositoryReader] = field(default_factory=dict)

    def read(self, model: str, version: str, name: str, sha256: str | None = None) -> bytes:
        reader = self.readers.get(version)
        if reader is None:
            raise CheckUnavailable(f"no storageUri known for {model}:{version}")
        return reader.read(model, version, name, sha256)
