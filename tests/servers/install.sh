#!/usr/bin/env bash
# Installs what the connector tests run against, when it is missing: `nats-server` (Debian's
# package) and PostgreSQL (the `postgresql` package), and the `postgres` system user that the
# database server runs as when the tests run as root (it refuses to run as root). Idempotent:
# with both installed it changes nothing and prints nothing, so CI pays for it once per machine.
# Usage: install.sh LOCK_FILE (the tests pass one under the cargo target dir).
set -euo pipefail
lock=${1:?usage: install.sh LOCK_FILE}
mkdir -p "$(dirname "$lock")"
# Two test processes may ask at once: one installs, the other waits for it.
exec 9>"$lock"
flock 9

missing=()
command -v nats-server >/dev/null 2>&1 || missing+=(nats-server)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if ((${#missing[@]})); then
    if [ "$(id -u)" -ne 0 ]; then
        echo "servers/install.sh: ${missing[*]} missing; install them: sudo apt-get install ${missing[*]}" >&2
        exit 1
    fi
    echo "servers/install.sh: installing ${missing[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin postgres
fi
