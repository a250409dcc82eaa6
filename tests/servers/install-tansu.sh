#!/usr/bin/env bash
# Installs what the Kafka connector tests run against, when it is missing: `tansu`, an
# Apache-2.0 Kafka-compatible broker, built by `cargo install --locked` at a pinned version
# with its in-memory storage only (`dynostore`: no PostgreSQL, SQLite or data-lake engines).
# Idempotent: with it installed at that version it changes nothing and prints nothing, so CI
# pays for the build once per machine (about 12 minutes on 2 busy cores).
# Usage: install-tansu.sh LOCK_FILE (the tests pass one under the cargo target dir).
set -euo pipefail
lock=${1:?usage: install-tansu.sh LOCK_FILE}
version=0.6.0
mkdir -p "$(dirname "$lock")"
# Two test processes may ask at once: one installs, the other waits for it.
exec 9>"$lock"
flock 9
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
if tansu --version 2>/dev/null | grep -q " $version\$"; then
    exit 0
fi
echo "servers/install-tansu.sh: installing tansu $version (cargo install, once per machine)" >&2
nice -n 10 "${CARGO:-cargo}" install --quiet --locked "tansu@$version" \
    --no-default-features --features dynostore
