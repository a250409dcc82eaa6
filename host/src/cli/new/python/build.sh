#!/usr/bin/env bash
# Builds {{name}}.wasm, the component of main.py (world `{{role}}` of wit/), with componentize-py.
set -euo pipefail
cd "$(dirname "$0")"
source ./toolchain.sh
# VIRTUAL_ENV: componentize-py bundles the libraries of this environment (msgpack).
VIRTUAL_ENV="$venv" "$venv/bin/componentize-py" --wit-path wit --world {{role}} componentize \
    --python-path . main --output {{name}}.wasm.tmp >/dev/null
mv {{name}}.wasm.tmp {{name}}.wasm
echo "built {{name}}.wasm ($(stat -c %s {{name}}.wasm) bytes)"
