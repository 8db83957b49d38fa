#!/usr/bin/env bash
# Triton's perf_analyzer into VENV (default .venv): the real binary ships in the tritonclient
# 2.34 wheel (PyPI's `perf-analyzer` is a placeholder, later tritonclient wheels carry no
# binary). It links libcudart, taken from the nvidia-cuda-runtime-cu12 wheel, and Debian's
# libb64 (scripts/install-system-packages.sh). Both wheels are pinned by hash and unpacked
# into VENV/perf_analyzer; VENV/bin/perf_analyzer runs the binary with that library path.
# The venv's own tritonclient stays at its pinned version. Skips what is already there.
set -euo pipefail
VENV="${1:-.venv}"
DIR="$VENV/perf_analyzer"
WRAPPER="$VENV/bin/perf_analyzer"
if [ -x "$WRAPPER" ] && [ -x "$DIR/perf_analyzer" ] && [ -f "$DIR/lib/libcudart.so.12" ]; then
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/wheels.txt" <<'PINS'
tritonclient==2.34.0 --hash=sha256:ce5845f94f8a014f6de1ca13e07049c31b4bdffca594bbe0654a6db58eb2ce4b
nvidia-cuda-runtime-cu12==12.9.79 --hash=sha256:25bba2dfb01d48a9b59ca474a1ac43c6ebf7011f1b0b8cc44f54eb6ac48a96c3
PINS
"$VENV/bin/pip" download --quiet --disable-pip-version-check --no-deps --require-hashes -r "$work/wheels.txt" -d "$work"
mkdir -p "$DIR/lib"
"$VENV/bin/python" - "$work" "$DIR" <<'PY'
import sys, zipfile
from pathlib import Path

work, target = Path(sys.argv[1]), Path(sys.argv[2])
members = {
    "tritonclient-2.34.0.data/data/bin/perf_analyzer": target / "perf_analyzer",
    "nvidia/cuda_runtime/lib/libcudart.so.12": target / "lib" / "libcudart.so.12",
}
for wheel in work.glob("*.whl"):
    with zipfile.ZipFile(wheel) as archive:
        for name in set(archive.namelist()) & members.keys():
            members[name].write_bytes(archive.read(name))
missing = [str(path) for path in members.values() if not path.exists()]
if missing:
    sys.exit(f"the wheels did not hold {', '.join(missing)}")
PY
chmod +x "$DIR/perf_analyzer"
cat > "$WRAPPER" <<SH
#!/bin/sh
# Triton's perf_analyzer (scripts/install-perf-analyzer.sh) with its libcudart
LD_LIBRARY_PATH="$(cd "$DIR" && pwd)/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}" exec "$(cd "$DIR" && pwd)/perf_analyzer" "\$@"
SH
chmod +x "$WRAPPER"
missing="$(LD_LIBRARY_PATH="$DIR/lib" ldd "$DIR/perf_analyzer" | grep 'not found' || true)"
if [ -n "$missing" ]; then
    echo "perf_analyzer cannot run: $(echo "$missing" | tr -s ' \t\n' ' ')" >&2
    exit 1
fi
echo "installed perf_analyzer (tritonclient 2.34.0) as $WRAPPER"
