# Sourced by build.sh and test.sh: sets `venv` to a virtual environment holding the pinned
# toolchain of requirements.lock: $JOBHOST_PYTHON_VENV if set (installed from the same lock
# file; used as it is), else .venv here, installed the first time and whenever the lock changes.
lock_sum="$(sha256sum requirements.lock | cut -d' ' -f1)"
stamp=".requirements.lock.sha256"
if [[ -n "${JOBHOST_PYTHON_VENV:-}" ]]; then
    venv="$JOBHOST_PYTHON_VENV"
    if [[ "$(cat "$venv/$stamp" 2>/dev/null)" != "$lock_sum" ]]; then
        echo "{{name}}: $venv was not installed from this requirements.lock" >&2
        exit 1
    fi
else
    venv="$PWD/.venv"
    if [[ ! -x "$venv/bin/python" || "$(cat "$venv/$stamp" 2>/dev/null)" != "$lock_sum" ]]; then
        echo "{{name}}: installing the pinned toolchain into $venv" >&2
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            --require-hashes --only-binary componentize-py -r requirements.lock
        echo "$lock_sum" >"$venv/$stamp"
    fi
fi
