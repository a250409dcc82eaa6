#!/usr/bin/env bash
# Runs a NATS server with JetStream, in the foreground, for the connector tests: on 127.0.0.1
# only, its store in DIR. It ends when the process that started it does (parent-death signal),
# so that a test run leaves no server behind. Usage: nats.sh DIR PORT
set -euo pipefail
dir=${1:?usage: nats.sh DIR PORT}
port=${2:?usage: nats.sh DIR PORT}
mkdir -p "$dir"
exec setpriv --pdeathsig=TERM -- nats-server -js -sd "$dir" -a 127.0.0.1 -p "$port"
