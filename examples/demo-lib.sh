# Sourced by the demos (examples/*/demo.sh): `step` and `fail`, and `host` and `guests`, the
# binaries cargo built, wherever cargo put them: in $JOBHOST_TARGET_DIR (`just demo` sets it),
# else in the target directory cargo reports (`target/`, or `CARGO_TARGET_DIR`, or cargo's
# configuration). `here` is the demo's folder.

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() {
    echo "demo: FAILED: $*" >&2
    exit 1
}

target="${JOBHOST_TARGET_DIR:-}"
if [ -z "$target" ]; then
    target=$(cd "$here" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
fi
host="$target/debug/host"
guests="$target/wasm32-wasip2/guest"
[ -x "$host" ] || fail "no host binary at $host: build it with \`just host\` (or run \`./dev demo\`)"

# `need_guests NAME...`: fails unless each component NAME.wasm is built.
need_guests() {
    for module in "$@"; do
        [ -f "$guests/$module.wasm" ] ||
            fail "no component $guests/$module.wasm: build them with \`just guests\` (or run \`./dev demo\`)"
    done
}
