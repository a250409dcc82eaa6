#!/usr/bin/env bash
# Runs the unit tests (test_*.py) natively, with the toolchain's Python (and its msgpack).
set -euo pipefail
cd "$(dirname "$0")"
source ./toolchain.sh
exec "$venv/bin/python" -m unittest discover "$@"
