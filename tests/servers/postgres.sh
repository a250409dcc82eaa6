#!/usr/bin/env bash
# Runs a PostgreSQL server in the foreground for the connector tests: on 127.0.0.1 only (no
# Unix socket), its data in DIR (made by initdb on first use), with MAX_PREPARED prepared
# transactions allowed (0 refuses two-phase commit). The superuser `postgres` connects without
# a password; every other role needs its password (scram-sha-256). As root, the server runs as
# the `postgres` system user (it refuses root). It ends when the process that started it does
# (parent-death signal), so that a test run leaves no server behind. Durability settings are
# off: the tests crash the job host, never the database server.
# Usage: postgres.sh DIR PORT MAX_PREPARED
set -euo pipefail
dir=${1:?usage: postgres.sh DIR PORT MAX_PREPARED}
port=${2:?usage: postgres.sh DIR PORT MAX_PREPARED}
max_prepared=${3:?usage: postgres.sh DIR PORT MAX_PREPARED}
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
as_owner=()
mkdir -p "$dir"
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$dir"
    as_owner=(--reuid=postgres --regid=postgres --init-groups)
fi
data="$dir/data"
if [ ! -f "$data/PG_VERSION" ]; then
    setpriv "${as_owner[@]}" -- "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 \
        --no-sync >/dev/null
    printf 'host all postgres 127.0.0.1/32 trust\nhost all all 127.0.0.1/32 scram-sha-256\n' \
        >"$data/pg_hba.conf"
fi
exec setpriv "${as_owner[@]}" --pdeathsig=INT -- "$bin/postgres" -D "$data" -p "$port" \
    -c listen_addresses=127.0.0.1 -c unix_socket_directories= \
    -c max_prepared_transactions="$max_prepared" -c max_connections=200 \
    -c fsync=off -c synchronous_commit=off -c full_page_writes=off
