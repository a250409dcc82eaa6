# Sourced by build.sh and test.sh: makes node_modules hold the pinned toolchain of
# package-lock.json: a link to $JOBHOST_NODE_MODULES if set (installed from the same lock file),
# else `npm ci`, the first time and whenever the lock file changes.
command -v node >/dev/null 2>&1 || { echo "{{name}}: node (20 or later) is required" >&2; exit 1; }
if [[ -n "${JOBHOST_NODE_MODULES:-}" ]]; then
    [[ -e node_modules ]] || ln -s "$JOBHOST_NODE_MODULES" node_modules
else
    lock_sum="$(sha256sum package-lock.json | cut -d' ' -f1)"
    if [[ ! -d node_modules || "$(cat node_modules/.lock.sha256 2>/dev/null)" != "$lock_sum" ]]; then
        echo "{{name}}: installing the pinned toolchain (npm ci)" >&2
        npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
        echo "$lock_sum" >node_modules/.lock.sha256
    fi
fi
