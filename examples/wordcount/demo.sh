#!/usr/bin/env bash
# The demo: run a word count (counter v1), take a savepoint while it runs, stop it, upgrade
# the counter to v2 (which migrates v1 state), resume from the savepoint, and check that the
# committed output is exactly what an uninterrupted run writes.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
host="$here/../../target/debug/host"
export HOST_HOME="$here/.host"
cd "$here"
rm -rf "$HOST_HOME" output
mkdir -p output

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. run the word count with counter v1"
"$host" run job.toml > run1.out 2> run1.err &
run1=$!
while [ ! -s run1.out ]; do sleep 0.1; done
job=$(head -1 run1.out)
echo "job id: $job"
sleep 1.5

step "2. take a savepoint while it runs: host save $job"
"$host" save "$job" | tee save.out
savepoint=$(head -1 save.out)

step "3. stop the job (output after the savepoint is not committed)"
"$host" stop "$job"
wait "$run1" || true
echo "committed so far: $(cat output/part-* 2>/dev/null | wc -l) count updates"
"$host" savepoints
"$host" inspect "$savepoint"

step "4. upgrade: counter v1 -> v2, and resume from the savepoint"
sed 's/counter_v1.wasm/counter_v2.wasm/' job.toml > job-v2.toml
"$host" check job-v2.toml --from "$savepoint"
"$host" run job-v2.toml --from "$savepoint" > run2.out 2> run2.err
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
rm -f run1.out run1.err run2.out run2.err save.out job-v2.toml
