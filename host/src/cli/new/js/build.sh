#!/usr/bin/env bash
# Builds {{name}}.wasm from {{module}}.js (see build.mjs).
set -euo pipefail
cd "$(dirname "$0")"
source ./toolchain.sh
exec node build.mjs {{module}}.js {{name}}.wasm
