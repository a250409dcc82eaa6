#!/usr/bin/env bash
# The connectors demo: a word count from a Kafka topic into a PostgreSQL table, exactly once
# through a `kill -9`.
#
# It starts its own servers on free ports of 127.0.0.1 (installing them first if they are
# missing, as the tests do: tests/servers/): a Kafka-compatible broker (tansu, in memory) and
# PostgreSQL, which end with it. Then: (1) a job produces the word-count demo's input to the
# topic `lines` (one message per line: the Kafka sink); (2) the word count reads the topic (the
# Kafka source) and writes each running count to the table `counts` (the PostgreSQL sink:
# a prepared transaction per checkpoint, committed once it completes); the demo kills it with
# `kill -9` mid-run; (3) `host run --from JOB` resumes it from its latest checkpoint to the
# topic's end; (4) a check: every count once, none lost, none twice, no prepared transaction
# left behind.
#
# It runs the binaries cargo built, as examples/wordcount/demo.sh does ($JOBHOST_TARGET_DIR, or
# cargo's target directory), and fails fast with the reason.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

. "$here/../demo-lib.sh"
need_guests line_source tokenizer counter_v1

servers="$here/../../tests/servers"
bash "$servers/install.sh" "$target/servers/install.lock"
bash "$servers/install-tansu.sh" "$target/servers/install-tansu.lock"
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

export HOST_HOME="$here/.host"
cd "$here"
rm -rf "$HOST_HOME" .servers .run run.out run.err
mkdir -p .servers .run
ln -sfn "$guests" "$here/guests"

# A background `host run` still going when the demo stops is stopped too; the servers end with
# this shell (their parent-death signal).
run=""
trap '[ -z "$run" ] || kill -9 "$run" 2>/dev/null || true' EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# `listening PORT WHAT`: waits (at most 60 s) until something accepts connections on PORT.
listening() {
    local tenths=600
    until (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; do
        [ "$tenths" -gt 0 ] || fail "$2 is not listening on port $1 after 60 s"
        sleep 0.1
        tenths=$((tenths - 1))
    done
}
sql() { psql -q -t -A -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -c "$1"; }

step "0. the servers: a Kafka-compatible broker (tansu) and PostgreSQL, on 127.0.0.1"
kafka_port=$(free_port)
pg_port=$(free_port)
bash "$servers/kafka.sh" "$here/.servers/kafka" "$kafka_port" > .servers/kafka.log 2>&1 &
bash "$servers/postgres.sh" "$here/.servers/postgres" "$pg_port" 10 > .servers/postgres.log 2>&1 &
listening "$kafka_port" "the broker"
listening "$pg_port" "PostgreSQL"
tansu topic create lines --broker "tcp://127.0.0.1:$kafka_port" --partitions 2 > /dev/null
sql "CREATE TABLE counts (key text, value text, ts bigint)"
echo "broker on port $kafka_port (topic \`lines\`, 2 partitions); PostgreSQL on port $pg_port (table \`counts\`)"
for file in load.toml job.toml; do
    sed -e "s|BROKERS|127.0.0.1:$kafka_port|" \
        -e "s|DATABASE|postgres://postgres@127.0.0.1:$pg_port/postgres|" \
        -e 's|"guests/|"../guests/|' -e 's|"\.\./wordcount/input"|"../../wordcount/input"|' \
        "$file" > ".run/$file"
done

step "1. produce the input's lines to the topic (a job with the Kafka sink)"
"$host" run .run/load.toml > run.out 2> run.err || { cat run.err >&2; fail "the load job failed"; }
lines=$(grep -c . ../wordcount/input/words.txt)
echo "$lines lines produced"

step "2. count the words from the topic into PostgreSQL, and kill -9 the job mid-run"
"$host" run .run/job.toml > run.out 2> run.err &
run=$!
tenths=1200
until [ "$(sql 'SELECT count(*) FROM counts')" -gt 2000 ]; do
    kill -0 "$run" 2>/dev/null || { cat run.err >&2; fail "the job ended before it was killed"; }
    [ "$tenths" -gt 0 ] || fail "no rows committed within 120 s"
    sleep 0.1
    tenths=$((tenths - 1))
done
job=$(head -1 run.out)
kill -9 "$run"
wait "$run" 2>/dev/null || true
run=""
echo "job $job killed with $(sql 'SELECT count(*) FROM counts') rows committed and" \
    "$(sql 'SELECT count(*) FROM pg_prepared_xacts') transactions prepared"

step "3. resume it from its latest checkpoint, to the topic's end"
"$host" run .run/job.toml --from "$job" > run.out 2> run.err || {
    cat run.err >&2
    fail "the resumed job failed"
}
echo "the resumed job ($(head -1 run.out)) read the topic to its end"

step "4. check: every running count once, none lost, none twice, nothing left prepared"
words=$(tr -s ' ' '\n' < ../wordcount/input/words.txt | grep -c .)
rows=$(sql 'SELECT count(*) FROM counts')
distinct=$(sql 'SELECT count(DISTINCT value) FROM counts')
prepared=$(sql 'SELECT count(*) FROM pg_prepared_xacts')
echo "words in the input: $words; rows: $rows; distinct counts: $distinct; prepared left: $prepared"
sql "SELECT key, max(split_part(value, ' ', 2)::int) AS n FROM counts GROUP BY key ORDER BY n DESC, key LIMIT 5" |
    sed 's/|/ /; s/^/  /'
tr -s ' ' '\n' < ../wordcount/input/words.txt | grep . | sort | uniq -c | sort -k1,1nr -k2 | head -5 |
    awk '{print "  expected " $2, $1}'
if [ "$words" = "$rows" ] && [ "$rows" = "$distinct" ] && [ "$prepared" = 0 ]; then
    echo "OK: exactly once through kill -9"
else
    fail "expected $words rows, each count once, and no transaction left prepared"
fi
