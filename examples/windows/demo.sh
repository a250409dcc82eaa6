#!/usr/bin/env bash
# The windows demo: a windowed count per key (tumbling 10 s of event time over out-of-order
# events, `window-count` v1) upgraded live to v2 (count + sum) with `host upgrade` while its
# windows are open; then a check that the windows it emitted, before and after the upgrade,
# are exactly those of an uninterrupted run of v1 (the sum aside, which v2 adds).
#
# It runs the binaries cargo built, as examples/wordcount/demo.sh does ($JOBHOST_TARGET_DIR, or
# cargo's target directory), and fails fast with the reason.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"

. "$here/../demo-lib.sh"
need_guests generator window_count_v1 window_count_v2 file_sink

export HOST_HOME="$here/.host"
cd "$here"
rm -rf "$HOST_HOME" output uninterrupted run.out run.err
mkdir -p output
ln -sfn "$guests" "$here/guests"

# A background `host run` still going when the demo stops is stopped too.
run=""
trap '[ -z "$run" ] || kill "$run" 2>/dev/null || true' EXIT

# `finish PID WHAT`: waits (at most 120 s) for background run PID to end, and fails unless it
# succeeded.
finish() {
    local tenths=1200 status=0
    while kill -0 "$1" 2>/dev/null; do
        [ "$tenths" -gt 0 ] || fail "$2 still running after 120 s"
        sleep 0.1
        tenths=$((tenths - 1))
    done
    wait "$1" || status=$?
    [ "$status" = 0 ] || { cat run.err >&2; fail "$2 exited with status $status"; }
}

# `sorted_windows`: the committed windows, their ` sum=...` (v2's) taken off, sorted.
sorted_windows() { cat output/part-* | sed 's/ sum=.*//' | sort; }

step "1. the reference: an uninterrupted run of window-count v1"
"$host" run job.toml > run.out 2> run.err &
run=$!
finish "$run" "the uninterrupted run"
run=""
sorted_windows > uninterrupted
echo "$(wc -l < uninterrupted) windows, e.g.:"
head -3 uninterrupted | sed 's/^/  /'
rm -rf output "$HOST_HOME" && mkdir output

step "2. run it again, and upgrade the window operator live once windows have fired"
"$host" run job.toml > run.out 2> run.err &
run=$!
tenths=1200
until [ -s run.out ] && [ -n "$(cat output/part-* 2>/dev/null)" ]; do
    kill -0 "$run" 2>/dev/null || { cat run.err >&2; fail "the run ended before any window fired"; }
    [ "$tenths" -gt 0 ] || fail "no window fired within 120 s"
    sleep 0.1
    tenths=$((tenths - 1))
done
job=$(head -1 run.out)
echo "job $job: $(cat output/part-* | wc -l) windows committed by v1; open windows wait for the watermark"
"$host" list
"$host" upgrade "$job" --operator windows --module guests/window_count_v2.wasm \
    --canary-records 100 --canary-ms 200
finish "$run" "the upgraded run"
run=""

step "3. the windows, before and after the upgrade"
v1=$(grep -vc ' sum=' output/part-* | awk -F: '{n += $2} END {print n}')
carried=$(cat output/part-* | grep -c ' sum=unknown$' || true)
opened=$(cat output/part-* | grep -c ' sum=[0-9-]*$' || true)
echo "emitted by v1, before the upgrade: $v1, e.g."
cat output/part-* | grep -v ' sum=' | head -2 | sed 's/^/  /'
echo "opened by v1 and emitted by v2 (their timers fired in v2; v1 did not sum): $carried, e.g."
cat output/part-* | grep ' sum=unknown$' | head -2 | sed 's/^/  /'
echo "opened and emitted by v2: $opened, e.g."
cat output/part-* | grep ' sum=[0-9-]*$' | head -2 | sed 's/^/  /'

step "4. check: the same windows as the uninterrupted run, each once"
if [ "$carried" -gt 0 ] && diff <(sorted_windows) uninterrupted > /dev/null; then
    echo "OK: $(sorted_windows | wc -l) windows, exactly the uninterrupted run's, across a live upgrade"
else
    diff <(sorted_windows) uninterrupted | head -10 >&2 || true
    fail "the windows differ from the uninterrupted run's (or none was carried over the upgrade)"
fi
rm -f run.out run.err uninterrupted
