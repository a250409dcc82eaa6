#!/usr/bin/env bash
# Runs a Kafka-compatible broker (tansu, in-memory storage) in the foreground for the
# connector tests: on 127.0.0.1 only, advertising that address, from DIR. Its data lives as
# long as it does. It ends when the process that started it does (parent-death signal), so
# that a test run leaves no server behind. Usage: kafka.sh DIR PORT
set -euo pipefail
dir=${1:?usage: kafka.sh DIR PORT}
port=${2:?usage: kafka.sh DIR PORT}
mkdir -p "$dir"
cd "$dir"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
exec setpriv --pdeathsig=TERM -- tansu broker --silent \
    --listener-url "tcp://127.0.0.1:$port" --advertised-listener-url "tcp://127.0.0.1:$port" \
    --storage-engine memory://tansu/
