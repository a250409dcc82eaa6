#!/usr/bin/env bash
# Installs headless Chromium (Debian's package) for the dashboard's browser test, idempotently.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
echo "tests/browser/setup.sh: installing chromium" >&2
export DEBIAN_FRONTEND=noninteractive
sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
sudo_if_needed apt-get update -qq
sudo_if_needed apt-get install -y -qq chromium >/dev/null
