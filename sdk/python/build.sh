#!/usr/bin/env bash
# Builds the Python guests (guest-examples/python/ and tests/guests/python/) into
# <target-dir>/wasm32-wasip2/guest/<name>_py.wasm, beside the Rust ones, idempotently:
#
# - a virtual environment at <target-dir>/venv-python-guests with the pinned, hash-checked
#   requirements of sdk/python/requirements.lock (pip's cache beside it, in the target dir);
# - every guest-examples/python/<name>.py and tests/guests/python/<name>.py built by
#   componentize-py for the world its class's base names (Operator: `operator`, TimedOperator
#   and WindowOperator: `timed-operator`, Source: `source`, Sink: `sink`), unless its inputs
#   (the example, the SDK, the WIT, the lock file) are unchanged since it was last built.
#
# <target-dir> is $JOBHOST_TARGET_DIR if set, else cargo's target directory. Nothing is
# installed elsewhere. `build.sh NAME...` builds only those examples (e.g. `counter_v1`).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
# Where the guests are: the examples users copy, and the tests' fixtures.
sources=("$root/guest-examples/python" "$root/tests/guests/python")
if [[ -z "${JOBHOST_TARGET_DIR:-}" ]]; then
    JOBHOST_TARGET_DIR="$(cd "$root" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
fi
target="$JOBHOST_TARGET_DIR"
venv="$target/venv-python-guests"
out="$target/wasm32-wasip2/guest"
lock="$here/requirements.lock"

say() { echo "sdk/python: $*" >&2; }

# The virtual environment, (re)installed when the lock file changed.
lock_sum="$(sha256sum "$lock" | cut -d' ' -f1)"
if [[ ! -x "$venv/bin/python" || "$(cat "$venv/.requirements.lock.sha256" 2>/dev/null)" != "$lock_sum" ]]; then
    say "installing the pinned requirements into $venv"
    python3 -m venv "$venv"
    PIP_CACHE_DIR="$target/pip-cache" "$venv/bin/python" -m pip install --quiet \
        --disable-pip-version-check --require-hashes --only-binary componentize-py \
        -r "$lock"
    echo "$lock_sum" >"$venv/.requirements.lock.sha256"
fi

# The world a guest is built for, from the base of its class.
world_of() {
    local base
    base="$(grep -oE '^class [A-Za-z_][A-Za-z_0-9]*\((jobhost\.)?(Operator|TimedOperator|WindowOperator|Source|Sink)\)' "$1" |
        head -n1 | sed -E 's/.*\((jobhost\.)?([A-Za-z]+)\)/\2/')"
    case "$base" in
    Operator) echo operator ;;
    TimedOperator | WindowOperator) echo timed-operator ;;
    Source) echo source ;;
    Sink) echo sink ;;
    *)
        say "$1: no class derived from Operator, TimedOperator, WindowOperator, Source or Sink"
        return 1
        ;;
    esac
}

if [[ $# -gt 0 ]]; then
    names=("$@")
else
    names=()
    for dir in "${sources[@]}"; do
        for file in "$dir"/*.py; do
            names+=("$(basename "$file" .py)")
        done
    done
fi

mkdir -p "$out"
sdk_sum="$(cat "$lock" "$root/wit/operator.wit" "$here"/jobhost/*.py | sha256sum | cut -d' ' -f1)"
for name in "${names[@]}"; do
    source=""
    for dir in "${sources[@]}"; do
        if [[ -f "$dir/$name.py" ]]; then source="$dir/$name.py"; fi
    done
    [[ -n "$source" ]] || { say "no guest $name.py in ${sources[*]}"; exit 1; }
    world="$(world_of "$source")"
    wasm="$out/${name}_py.wasm"
    inputs="$( (echo "$sdk_sum $world" && cat "$source") | sha256sum | cut -d' ' -f1)"
    if [[ -f "$wasm" && "$(cat "$wasm.inputs" 2>/dev/null)" == "$inputs" ]]; then
        continue
    fi
    say "building ${name}_py.wasm (world $world)"
    started=$SECONDS
    # VIRTUAL_ENV makes componentize-py look for libraries in this venv's site-packages (and not
    # wherever `python3` on PATH would put them). It writes nothing but its output.
    (cd "$target" && VIRTUAL_ENV="$venv" "$venv/bin/componentize-py" \
        --wit-path "$root/wit" --world "$world" componentize \
        --python-path "$here" --python-path "$(dirname "$source")" \
        --output "$wasm.tmp" "$name" >/dev/null)
    mv "$wasm.tmp" "$wasm"
    echo "$inputs" >"$wasm.inputs"
    say "built ${name}_py.wasm: $(stat -c %s "$wasm") bytes in $((SECONDS - started)) s"
done
