#!/usr/bin/env bash
# The demo: run a word count (counter v1), take a savepoint while it runs, stop it, upgrade
# the counter to v2 (which migrates v1 state), resume from the savepoint, and check that the
# committed output is exactly what an uninterrupted run writes.
#
# It runs the binaries cargo built, wherever cargo put them: in $JOBHOST_TARGET_DIR (`just demo`
# sets it), else in the target directory cargo reports (`target/`, or `CARGO_TARGET_DIR`, or
# cargo's configuration). Every step fails fast, with the reason, rather than waiting for ever.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

. "$here/../demo-lib.sh"
script="$here/$(basename "${BASH_SOURCE[0]}")"
trap 'echo "demo: FAILED (exit $?) at line $LINENO: $(sed -n "${LINENO}p" "$script")" >&2' ERR
need_guests line_source tokenizer counter_v1 counter_v2 file_sink

export HOST_HOME="$here/.host"
cd "$here"
rm -rf "$HOST_HOME" output run1.out run1.err run2.out run2.err save.out job-v1.toml job-v2.toml
mkdir -p output

# A background `host run` still going when the demo stops, for whatever reason, is stopped too.
run1="" run2=""
cleanup() {
    for pid in $run1 $run2; do
        kill "$pid" 2>/dev/null || true
    done
}
trap cleanup EXIT

# `ended_within PID SECONDS`: waits for background process PID to end, for at most SECONDS.
ended_within() {
    local pid=$1 tenths=$(($2 * 10))
    while kill -0 "$pid" 2>/dev/null; do
        [ "$tenths" -gt 0 ] || return 1
        sleep 0.1
        tenths=$((tenths - 1))
    done
}

# `reap PID`: sets `status` to the exit status of background process PID, once it has ended.
reap() {
    status=0
    wait "$1" || status=$?
}

# `show FILE`: a failed run's stderr, for the reason.
show() {
    echo "---- $1:" >&2
    cat "$1" >&2 || true
    echo "----" >&2
}

# job.toml names its modules in `guests/`, beside it: a link to wherever cargo built them.
ln -sfn "$guests" "$here/guests"
cp job.toml job-v1.toml

step "1. run the word count with counter v1"
"$host" run job-v1.toml > run1.out 2> run1.err &
run1=$!
# Its first line is the job id, printed once every component is compiled and the job starts.
id_wait_tenths=600
while [ ! -s run1.out ]; do
    if ! kill -0 "$run1" 2>/dev/null; then
        reap "$run1"
        run1=""
        show run1.err
        fail "\`host run job-v1.toml\` exited with status $status before printing a job id"
    fi
    if [ "$id_wait_tenths" -le 0 ]; then
        kill "$run1" 2>/dev/null || true
        show run1.err
        fail "\`host run job-v1.toml\` printed no job id within 60 s"
    fi
    sleep 0.1
    id_wait_tenths=$((id_wait_tenths - 1))
done
job=$(head -1 run1.out)
echo "job id: $job"
sleep 1.5

step "2. take a savepoint while it runs: host save $job"
"$host" save "$job" | tee save.out
savepoint=$(head -1 save.out)
[ -n "$savepoint" ] || fail "\`host save $job\` printed no savepoint id"

step "3. stop the job (output after the savepoint is not committed)"
"$host" stop "$job"
if ! ended_within "$run1" 30; then
    show run1.err
    fail "job $job still running 30 s after \`host stop\`"
fi
reap "$run1"
run1=""
echo "host run exited with status $status"
echo "committed so far: $(cat output/part-* 2>/dev/null | wc -l) count updates"
"$host" savepoints
"$host" inspect "$savepoint"

step "4. upgrade: counter v1 -> v2, and resume from the savepoint"
sed 's/counter_v1.wasm/counter_v2.wasm/' job-v1.toml > job-v2.toml
"$host" check job-v2.toml --from "$savepoint"
"$host" run job-v2.toml --from "$savepoint" > run2.out 2> run2.err &
run2=$!
if ! ended_within "$run2" 120; then
    kill "$run2" 2>/dev/null || true
    show run2.err
    fail "the resumed job did not finish within 120 s"
fi
reap "$run2"
run2=""
if [ "$status" != 0 ]; then
    show run2.err
    fail "\`host run job-v2.toml --from $savepoint\` exited with status $status"
fi
echo "resumed job $(head -1 run2.out) finished"

step "5. check: the output equals an uninterrupted count"
expected=$(tr -s ' ' '\n' < input/words.txt | grep -c .)
got=$(cat output/part-* | wc -l)
distinct=$(cat output/part-* | awk '{print $1" "$2}' | sort -u | wc -l)
echo "words in the input: $expected; count updates committed: $got; distinct updates: $distinct"
echo "final counts (v2 lines show the migrated state: first-seen=unknown for words v1 counted):"
cat output/part-* | awk '{c[$1]=$2 > c[$1] ? $2 : c[$1]} END {for (w in c) print "  " w, c[w]}' | sort -k2 -n -r | head -5
tr -s ' ' '\n' < input/words.txt | grep . | sort | uniq -c | sort -n -r | head -5 | awk '{print "  expected " $2, $1}'
if [ "$expected" = "$got" ] && [ "$got" = "$distinct" ]; then
    echo "OK: no count update lost or repeated across save, stop, upgrade and resume"
else
    echo "MISMATCH" >&2
    exit 1
fi
rm -f run1.out run1.err run2.out run2.err save.out job-v1.toml job-v2.toml
