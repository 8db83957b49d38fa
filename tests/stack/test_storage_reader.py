"""The storageUri reader (KServe's storage library) on forms this machine can serve: an
HTTP server on 127.0.0.1 holding the example repository, a local path, `file://`, and a
`pvc://` claim mounted where the operator mounts claims. Every file must come back as
stored (an .npz is a zip archive: it must not be unpacked), pass its manifest's sha256,
and leave no file behind; a failed read is one CheckUnavailable line naming the URI.
With a cache, a pinned file is downloaded once while its manifest pins the same bytes."""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelcanary.adapters.file_cache import FileCache
from modelcanary.adapters.repo_reader import CheckUnavailable, pinned_file, version_manifest
from modelcanary.adapters.storage_reader import ByVersion, StorageRepository
from modelcanary.modelrepo.manifest import GOLDEN, MANIFEST, sha256_bytes
from tests.support.file_server import FileServer

VERSIONS = ("1", "2", "5")


@pytest.fixture(scope="module")
def http_root(digits_repo: Path) -> Iterator[str]:
    """The example repository's root as an HTTP storageUri."""
    with FileServer(digits_repo.parent) as server:
        yield f"{server.url}/{digits_repo.name}"


@pytest.fixture(autouse=True)
def own_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files go to a directory of the test's own, to see that none are left."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def files_of(repo: Path, version: str) -> list[str]:
    return sorted(p.name for p in (repo / "digits" / version).iterdir() if p.suffix != ".onnx")


def assert_reads_every_file_unchanged(reader: StorageRepository, repo: Path, scratch: Path) -> None:
    for version in VERSIONS:
        names = files_of(repo, version)
        assert MANIFEST in names and GOLDEN in names
        for name in names:
            assert (
                reader.read("digits", version, name)
                == (repo / "digits" / version / name).read_bytes()
            ), name
        manifest = version_manifest(reader, "digits", version)
        assert manifest.holdout_file is not None and manifest.holdout_file.endswith(".npz")
        holdout = pinned_file(reader, manifest, manifest.holdout_file)
        assert holdout[:2] == b"PK"  # the zip archive itself, not its members
        assert pinned_file(reader, manifest, GOLDEN)[:2] == b"PK"
    assert list(scratch.iterdir()) == []


def test_http_reads_every_file_as_stored(http_root: str, digits_repo: Path, own_tmp: Path) -> None:
    assert_reads_every_file_unchanged(StorageRepository(http_root), digits_repo, own_tmp)


@pytest.mark.parametrize("form", ["path", "file", "pvc"])
def test_local_forms_read_every_file_as_stored(
    form: str, digits_repo: Path, own_tmp: Path, tmp_path: Path
) -> None:
    if form == "pvc":  # pvc://CLAIM/PATH: the claim mounted at <mounts>/CLAIM
        mounts = tmp_path / "mnt-pvc"
        (mounts / "models").mkdir(parents=True)
        (mounts / "models" / "model_repo").symlink_to(digits_repo)
        reader = StorageRepository("pvc://models/model_repo", pvc_mounts=str(mounts))
    else:
        reader = StorageRepository(f"file://{digits_repo}" if form == "file" else str(digits_repo))
    assert_reads_every_file_unchanged(reader, digits_repo, own_tmp)


def test_a_missing_file_is_one_line_naming_the_uri(
    http_root: str, digits_repo: Path, own_tmp: Path
) -> None:
    for root in (http_root, f"file://{digits_repo}", "pvc://nothing/model_repo"):
        with pytest.raises(CheckUnavailable) as caught:
            StorageRepository(root).read("digits", "9", MANIFEST)
        message = str(caught.value)
        assert message.startswith(f"{root}/digits/9/{MANIFEST}: ") and "\n" not in message
    with pytest.raises(
        CheckUnavailable, match=r"digits/9/manifest.json: RuntimeError: HTTP resource not found"
    ):
        StorageRepository(http_root).read("digits", "9", MANIFEST)
    assert list(own_tmp.iterdir()) == []


def test_an_unreachable_store_is_check_unavailable(own_tmp: Path) -> None:
    with FileServer(own_tmp) as server:
        url = server.url
    with pytest.raises(CheckUnavailable, match=f"^{url}/r/digits/1/{MANIFEST}: "):
        StorageRepository(f"{url}/r").read("digits", "1", MANIFEST)


def test_a_server_answering_another_content_type_is_refused_as_kserve_does(
    digits_repo: Path, own_tmp: Path
) -> None:
    """KServe's HTTP download takes only application/octet-stream for a non-archive."""
    with FileServer(digits_repo.parent, content_type="application/json") as server:
        reader = StorageRepository(f"{server.url}/{digits_repo.name}")
        with pytest.raises(CheckUnavailable, match="octet-stream"):
            reader.read("digits", "1", MANIFEST)
    assert list(own_tmp.iterdir()) == []


def test_a_file_the_library_would_unpack_is_refused(
    digits_repo: Path, own_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the system's MIME table calls .npz a zip, KServe's library would unpack it:
    refused rather than read as something else."""
    real = mimetypes.guess_type

    def npz_is_zip(url: str, strict: bool = True) -> tuple[str | None, str | None]:
        if str(url).endswith(".npz"):
            return "application/zip", None
        return real(url, strict)

    monkeypatch.setattr(mimetypes, "guess_type", npz_is_zip)
    with pytest.raises(CheckUnavailable, match=r"would unpack golden\.npz"):
        StorageRepository(str(digits_repo)).read("digits", "1", GOLDEN)
    assert list(own_tmp.iterdir()) == []


def test_versions_at_different_roots(digits_repo: Path, http_root: str) -> None:
    reader = ByVersion(
        {"1": StorageRepository(str(digits_repo)), "2": StorageRepository(http_root)}
    )
    for version in ("1", "2"):
        assert (
            reader.read("digits", version, MANIFEST)
            == (digits_repo / "digits" / version / MANIFEST).read_bytes()
        )
    with pytest.raises(CheckUnavailable, match="no storageUri known for digits:5"):
        reader.read("digits", "5", MANIFEST)


def _read_checked_files(reader: StorageRepository, version: str) -> tuple[bytes, bytes]:
    """What the golden check and the holdout gate read: the manifest, then its pinned files."""
    manifest = version_manifest(reader, "digits", version)
    assert manifest.holdout_file is not None
    return pinned_file(reader, manifest, GOLDEN), pinned_file(
        reader, manifest, manifest.holdout_file
    )


def test_pinned_files_are_downloaded_once(digits_repo: Path, own_tmp: Path, tmp_path: Path) -> None:
    """The operator builds a reader per tick; the cache outlives them: a second tick reads
    the manifest again, and the pinned files from the cache."""
    cache = FileCache(tmp_path / "cache")
    with FileServer(digits_repo.parent) as server:
        root = f"{server.url}/{digits_repo.name}"
        first = _read_checked_files(StorageRepository(root, cache=cache), "1")
        downloads = len(server.served)
        second = _read_checked_files(StorageRepository(root, cache=cache), "1")
        again = server.served[downloads:]
    assert (
        first
        == second
        == (
            (digits_repo / "digits" / "1" / GOLDEN).read_bytes(),
            (digits_repo / "digits" / "1" / first_holdout(digits_repo)).read_bytes(),
        )
    )
    assert downloads == 3 and again == [f"/{digits_repo.name}/digits/1/{MANIFEST}"], again
    assert list(own_tmp.iterdir()) == []  # the downloads' temporary directories are gone


def first_holdout(repo: Path) -> str:
    holdout = json.loads((repo / "digits" / "1" / MANIFEST).read_text())["holdout"]["file"]
    return str(holdout)


def test_a_version_exported_again_is_read_again(
    digits_repo: Path, own_tmp: Path, tmp_path: Path
) -> None:
    """New golden samples, and the manifest pinning them: the next read downloads them."""
    repo = tmp_path / "served" / "model_repo"
    shutil.copytree(digits_repo, repo)
    cache = FileCache(tmp_path / "cache")
    with FileServer(repo.parent) as server:
        reader = StorageRepository(f"{server.url}/model_repo", cache=cache)
        old, _ = _read_checked_files(reader, "1")
        golden, manifest = repo / "digits" / "1" / GOLDEN, repo / "digits" / "1" / MANIFEST
        golden.write_bytes((repo / "digits" / "2" / GOLDEN).read_bytes())
        pins = json.loads(manifest.read_text())
        pins["files"][f"1/{GOLDEN}"] = sha256_bytes(golden.read_bytes())
        manifest.write_text(json.dumps(pins))
        new, _ = _read_checked_files(reader, "1")
    assert new == golden.read_bytes() != old
    assert server.served.count(f"/model_repo/digits/1/{GOLDEN}") == 2


def test_the_cache_keeps_to_its_bound_dropping_the_least_recently_used(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache", max_bytes=2500)
    blobs = {name: bytes([index]) * 1000 for index, name in enumerate("abc")}
    for name in ("a", "b"):
        cache.put(f"http://store/{name}", sha256_bytes(blobs[name]), blobs[name])
    assert cache.get("http://store/a", sha256_bytes(blobs["a"])) == blobs["a"]  # a used last
    os.utime(next((tmp_path / "cache").glob(f"*-{sha256_bytes(blobs['b'])}")), (0, 0))
    cache.put("http://store/c", sha256_bytes(blobs["c"]), blobs["c"])
    kept = {name for name in blobs if cache.get(f"http://store/{name}", sha256_bytes(blobs[name]))}
    assert kept == {"a", "c"}
    assert sum(p.stat().st_size for p in (tmp_path / "cache").iterdir()) <= 2500
    assert cache.get("http://elsewhere/a", sha256_bytes(blobs["a"])) is None  # by URI too


def test_a_damaged_cached_file_is_dropped(tmp_path: Path) -> None:
    cache = FileCache(tmp_path / "cache")
    data = b"golden samples"
    cache.put("http://store/g", sha256_bytes(data), data)
    next((tmp_path / "cache").iterdir()).write_bytes(b"golden sampled")
    assert cache.get("http://store/g", sha256_bytes(data)) is None
    assert list((tmp_path / "cache").iterdir()) == []
