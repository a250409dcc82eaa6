#!/usr/bin/env bash
# Runs the unit tests of test/ natively (node --test).
set -euo pipefail
cd "$(dirname "$0")"
source ./toolchain.sh
exec node --test test/ "$@"
