#!/usr/bin/env bash
# Builds the JavaScript operators (guest-examples/js/*.js, tests/guests/js/*.js) into components,
# <target-dir>/wasm32-wasip2/guest/<name>_js.wasm, beside the Rust ones. Idempotent: installs
# the pinned toolchain (npm ci) only when node_modules is missing or package-lock.json changed,
# and rebuilds only the components whose sources, WIT or toolchain changed.
#
# Usage: sdk/js/build.sh [NAME...]    (NAME: an example, e.g. counter_v1; default: all)
# The target dir is $JOBHOST_TARGET_DIR if set, else cargo's (honouring CARGO_TARGET_DIR).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

command -v node >/dev/null 2>&1 || { echo "sdk/js: node (20 or later) is required" >&2; exit 1; }
target="${JOBHOST_TARGET_DIR:-}"
if [ -z "$target" ]; then
    target="$(cd "$here/../.." && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
fi

cd "$here"
lock="$(sha256sum package-lock.json | cut -d' ' -f1)"
installed="node_modules/.jobhost-lock.sha256"
if [ ! -d node_modules ] || [ "$(cat "$installed" 2>/dev/null)" != "$lock" ]; then
    echo "sdk/js: installing the toolchain (npm ci)" >&2
    npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
    echo "$lock" > "$installed"
fi

exec node build.mjs --out "$target/wasm32-wasip2/guest" --work "$target/guest-js" "$@"
