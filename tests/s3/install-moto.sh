#!/usr/bin/env bash
# Installs moto's S3-compatible server (`moto_server`), pinned, into a virtual environment for
# the S3 end-to-end tests. Idempotent: does nothing when the environment already holds the
# pinned version. Usage: install-moto.sh VENV_DIR (the tests pass <cargo target dir>/venv-moto).
set -euo pipefail
MOTO_VERSION=5.2.5
venv=${1:?usage: install-moto.sh VENV_DIR}
# Written last: an install that was interrupted has no marker, and is redone from scratch.
marker="$venv/.moto-$MOTO_VERSION"

mkdir -p "$(dirname "$venv")"
# Two test processes may ask at once: one installs, the other waits for it.
exec 9>"$venv.lock"
flock 9
if [ -e "$marker" ] && [ -x "$venv/bin/moto_server" ]; then
    exit 0
fi
echo "install-moto: installing moto[server]==$MOTO_VERSION into $venv" >&2
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
touch "$marker"
