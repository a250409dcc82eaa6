//! Event time: watermarks derived by the host from the timestamps a source emits, carried in
//! band, combined over inputs with idle ones left out; timers kept by the host per key group,
//! fired through the `timer-probe` operator's `on-timer`. The committed output equals a model
//! computed without the host, through save and resume, `kill -9` and resume, rescaling and a
//! live upgrade; an idle source subtask holds no window back; a no-heartbeat alert fires on an
//! idle key, and at once after a restore past its due time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{Dir, RunningJob, file_sink_table, guest, wait_until};

/// The generator's key sequence (tests/guests/generator): its first state and its step.
const SEED: u64 = 0x2545_f491_4f6c_dd1d;

fn step(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Record `i`'s timestamp, as the generator stamps it (`step_ms` apart, less its disorder).
fn timestamp(i: u64, step_ms: u64, disorder_ms: u64) -> i64 {
    let jitter = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % (disorder_ms + 1);
    (i * step_ms) as i64 - jitter as i64
}

/// A job of the generator (keyed records, out of order within `disorder_ms`), then `key-by`,
/// then the timer probe (or another timed operator: `probe_module`, the window tests'), then
/// the file sink.
#[derive(Clone)]
pub(crate) struct Timed {
    pub source_parallelism: u32,
    pub probe_parallelism: u32,
    pub records: u64,
    pub keys: u64,
    /// The generator's `step_ms`: record `i` is stamped `start_ms + i * step_ms`, less its
    /// disorder.
    pub step_ms: u64,
    pub start_ms: i64,
    /// The generator's `late_every` and `late_by_ms`: every `late_every`-th record (0: none)
    /// is stamped `late_by_ms` earlier, in a poll of its own.
    pub late_every: u64,
    pub late_by_ms: i64,
    pub disorder_ms: u64,
    /// The source subtasks that emit nothing (and never run dry), comma-separated.
    pub silent: &'static str,
    /// The source's `watermark` table.
    pub watermark: &'static str,
    pub records_per_second: u64,
    /// The probe's config (`window_ms`, `heartbeat_ms`).
    pub probe: String,
    pub probe_module: PathBuf,
}

impl Default for Timed {
    fn default() -> Self {
        Timed {
            source_parallelism: 2,
            probe_parallelism: 2,
            records: 6_000,
            keys: 40,
            step_ms: 1,
            start_ms: 0,
            late_every: 0,
            late_by_ms: 0,
            disorder_ms: 30,
            silent: "",
            watermark: "{ out_of_orderness_ms = 30 }",
            records_per_second: 500,
            probe: "{ window_ms = \"100\" }".to_owned(),
            probe_module: guest("timer_probe"),
        }
    }
}

impl Timed {
    pub fn write(&self, dir: &Dir) -> String {
        let text = format!(
            r#"
name = "timed"
checkpoint_interval_ms = 150

[[operators]]
id = "events"
role = "source"
module = "{generator}"
parallelism = {source_parallelism}
records_per_second_max = {rate}
config = {{ records = "{records}", keys = "{keys}", step_ms = "{step}", start_ms = "{start}", late_every = "{late_every}", late_by_ms = "{late_by}", disorder_ms = "{disorder}", silent = "{silent}" }}
watermark = {watermark}

[[operators]]
id = "probe"
role = "operator"
module = "{probe_module}"
parallelism = {probe_parallelism}
clock = true
config = {probe}
{sink}
[[edges]]
from = "events"
to = "probe"
partition = "key-by"

[[edges]]
from = "probe"
to = "sink"
partition = "rebalance"
"#,
            generator = guest("generator").display(),
            sink = file_sink_table(),
            probe_module = self.probe_module.display(),
            source_parallelism = self.source_parallelism,
            probe_parallelism = self.probe_parallelism,
            rate = self.records_per_second,
            records = self.records,
            keys = self.keys,
            step = self.step_ms,
            start = self.start_ms,
            late_every = self.late_every,
            late_by = self.late_by_ms,
            disorder = self.disorder_ms,
            silent = self.silent,
            watermark = self.watermark,
            probe = self.probe,
        );
        let path = dir.path().join("timed.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }

    /// Each record the source emits: its key and timestamp.
    pub fn records(&self) -> Vec<(String, i64)> {
        let silent: Vec<u64> = self
            .silent
            .split(',')
            .filter_map(|s| s.parse().ok())
            .collect();
        let mut sequence = SEED;
        let mut records = Vec::new();
        for i in 0..self.records {
            let n = step(&mut sequence) % self.keys;
            if !silent.contains(&(i % u64::from(self.source_parallelism))) {
                let mut at = self.start_ms + timestamp(i, self.step_ms, self.disorder_ms);
                if self.is_late(i) {
                    at -= self.late_by_ms;
                }
                records.push((format!("k{n}"), at));
            }
        }
        records
    }

    /// Whether the generator stamps record `i` `late_by_ms` earlier.
    pub fn is_late(&self, i: u64) -> bool {
        self.late_every > 0 && i % self.late_every == self.late_every - 1
    }

    /// The records of each key in each tumbling window of `window_ms`, by key and window
    /// start, computed without the host.
    pub fn counts(&self, window_ms: i64) -> BTreeMap<(String, i64), u64> {
        let mut counts: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for (key, timestamp) in self.records() {
            let start = timestamp.div_euclid(window_ms) * window_ms;
            *counts.entry((key, start)).or_default() += 1;
        }
        counts
    }

    /// The windows the probe emits for these records, sorted: `window <key> <end> <count>`.
    fn model(&self, window_ms: i64) -> Vec<String> {
        let counts = self.counts(window_ms).into_iter();
        let mut lines: Vec<String> = counts
            .map(|((key, start), count)| format!("window {key} {} {count}", start + window_ms - 1))
            .collect();
        lines.sort();
        lines
    }
}

/// The committed output, sorted.
fn sorted_output(dir: &Dir) -> Vec<String> {
    let mut output = dir.committed_output();
    output.sort();
    output
}

/// Asserts the committed output is `expected` (sorted), saying what is missing or extra.
pub(crate) fn assert_output(dir: &Dir, expected: &[String]) {
    assert_lines(sorted_output(dir), expected);
}

/// Asserts `output` (sorted) is `expected` (sorted), saying what is missing or extra.
pub(crate) fn assert_lines(output: Vec<String>, expected: &[String]) {
    let missing: Vec<_> = expected
        .iter()
        .filter(|l| !output.contains(l))
        .take(5)
        .collect();
    let extra: Vec<_> = output
        .iter()
        .filter(|l| !expected.contains(l))
        .take(5)
        .collect();
    assert_eq!(
        output.len(),
        expected.len(),
        "missing (up to 5): {missing:?}; extra or repeated (up to 5): {extra:?}"
    );
    assert_eq!(output, expected, "missing: {missing:?}; extra: {extra:?}");
}

/// Waits until the job in `dir` has committed more than `lines` lines.
pub(crate) fn wait_for_output_past(dir: &Dir, lines: usize) {
    wait_until("output committed past what came before", || {
        dir.committed_output().len() > lines
    });
}

/// Waits until `running`, a job that never ends by itself, has committed as many lines as
/// `expected` holds, stops it, and asserts that its output is `expected`.
fn stop_once_committed(dir: &Dir, running: RunningJob, expected: &[String]) {
    wait_until("the expected output committed", || {
        dir.committed_output().len() >= expected.len()
    });
    dir.host_ok(&["stop", &running.job]);
    running.wait_ok();
    assert_output(dir, expected);
}

/// `host run JOB --from POINT` (none: a fresh run).
pub(crate) fn start(dir: &Dir, job: &str, from: Option<&str>) -> RunningJob {
    match from {
        Some(point) => dir.start(&[job, "--from", point]),
        None => dir.start(&[job]),
    }
}

/// `host list --json`'s event time of `job`'s subtasks of `operator`: (watermark, timers).
pub(crate) fn time_of(dir: &Dir, job: &str, operator: &str) -> Vec<(Option<i64>, u64)> {
    let listed: serde_json::Value =
        serde_json::from_str(&dir.host_ok(&["list", "--json"])).unwrap();
    let row = listed.as_array().unwrap().iter().find(|r| r["job"] == job);
    let subtasks = row
        .and_then(|r| r["time"].as_array())
        .cloned()
        .unwrap_or_default();
    let of_operator = subtasks.iter().filter(|s| s["operator"] == operator);
    let time = of_operator.map(|s| {
        (
            s["watermark"].as_i64(),
            s["timers_pending"].as_u64().unwrap(),
        )
    });
    time.collect()
}

/// `host check JOB --from POINT --json`'s pending timers of `operator`: (event, processing).
pub(crate) fn pending_in(dir: &Dir, job: &str, point: &str, operator: &str) -> (u64, u64) {
    let report = dir.host_ok(&["check", job, "--from", point, "--json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let operators = report["operators"].as_array().unwrap();
    let verdict = operators
        .iter()
        .find(|v| v["operator"] == operator)
        .unwrap();
    let timers = &verdict["timers"];
    let count = |clock: &str| timers[clock].as_u64().unwrap_or(0);
    (count("event_time"), count("processing_time"))
}

/// Runs `first` until it committed a window, stops it with a savepoint (which must hold pending
/// event-time timers), resumes from it as `resumed` (the same job, or its probe another
/// module: `run --from` upgrades it), `kill -9`s that once it committed more, and resumes from
/// its last checkpoint to the end.
pub(crate) fn through_save_and_kill_9(dir: &Dir, first: &Timed, resumed: &Timed) {
    let job = first.write(dir);
    // Windows fire as the watermark passes them, while the source still runs.
    let running = start(dir, &job, None);
    wait_for_output_past(dir, 0);
    let point = dir.save_and_stop(running);
    let (pending, _) = pending_in(dir, &job, &point, "probe");
    assert!(pending > 0, "the savepoint holds the open windows' timers");
    let job = resumed.write(dir);
    let committed = dir.committed_output().len();
    let running = start(dir, &job, Some(&point));
    wait_for_output_past(dir, committed);
    let killed = running.job.clone();
    running.kill();
    start(dir, &job, Some(&killed)).wait_ok();
}

#[test]
fn event_time_windows_over_out_of_order_input_equal_a_model_through_save_and_kill_9() {
    let dir = Dir::new(0);
    let timed = Timed::default();
    through_save_and_kill_9(&dir, &timed, &timed);
    assert_output(&dir, &timed.model(100));
}

#[test]
fn an_idle_source_subtask_does_not_hold_the_watermark_back_after_idle_ms() {
    let dir = Dir::new(0);
    // Subtask 1 of the source emits nothing and never runs dry: without idleness the probe's
    // watermark would stay at its minimum, and no window would ever fire.
    let timed = Timed {
        silent: "1",
        records: 2_000,
        records_per_second: 2_000,
        watermark: "{ out_of_orderness_ms = 30, idle_ms = 200 }",
        ..Timed::default()
    };
    let job = timed.write(&dir);
    let running = start(&dir, &job, None);
    let expected = timed.model(100);
    wait_until("every window fired", || {
        dir.committed_output().len() >= expected.len()
    });
    // Subtask 0 ran dry (its watermark went to the end of time), subtask 1 is idle: the
    // probe's watermark is the end of time, and no timer is left.
    let probes = time_of(&dir, &running.job, "probe");
    assert_eq!(probes, [(Some(i64::MAX), 0), (Some(i64::MAX), 0)]);
    dir.host_ok(&["stop", &running.job]);
    running.wait_ok();
    assert_output(&dir, &expected);
}

#[test]
fn records_behind_the_watermark_are_counted_late_where_they_arrive() {
    let dir = Dir::new(0);
    // Source subtask 0 stamps every 301st record 500 ms earlier (far past the 30 ms bound);
    // subtask 1 emits nothing and is idle after 1 ms, so that from then on (the first late
    // record is record 300, some 150 ms in) the probe's watermark is subtask 0's, and the job
    // runs on once subtask 0 ran dry.
    let timed = Timed {
        silent: "1",
        records: 3_000,
        records_per_second: 1_000,
        late_every: 301,
        late_by_ms: 500,
        watermark: "{ out_of_orderness_ms = 30, idle_ms = 1 }",
        ..Timed::default()
    };
    let job = timed.write(&dir);
    let running = start(&dir, &job, None);
    // Subtask 0 emits the even records; a record within the bound is never behind it.
    let late = (0..timed.records).filter(|&i| i % 2 == 0 && timed.is_late(i));
    let late = late.count() as u64;
    assert_eq!(late, 5);
    wait_until("every record reached the probes", || {
        let probes = time_of(&dir, &running.job, "probe");
        probes
            .iter()
            .all(|&(watermark, _)| watermark == Some(i64::MAX))
    });
    assert_eq!(late_in(&dir, &running.job, "probe"), late);
    // Each late record opens again a window that already fired (500 ms behind, windows of
    // 100 ms), whose timer, in the past, fires at the next watermark: its count goes on
    // stamped with the window's end, behind the sink's watermark too.
    assert_eq!(late_in(&dir, &running.job, "sink"), late);
    dir.host_ok(&["stop", &running.job]);
    running.wait_ok();
}

/// `host list --json`'s records behind the watermark of `job`'s subtasks of `operator`, summed.
fn late_in(dir: &Dir, job: &str, operator: &str) -> u64 {
    let listed: serde_json::Value =
        serde_json::from_str(&dir.host_ok(&["list", "--json"])).unwrap();
    let row = listed.as_array().unwrap().iter().find(|r| r["job"] == job);
    let subtasks = row.and_then(|r| r["time"].as_array()).unwrap();
    let of_operator = subtasks.iter().filter(|s| s["operator"] == operator);
    of_operator
        .map(|s| s["records_late"].as_u64().unwrap())
        .sum()
}

/// A job whose probe alerts each key `heartbeat_ms` after its last record: a few keys, all
/// their records at once from source subtask 0; subtask 1 emits nothing, so the job runs on.
fn heartbeats(heartbeat_ms: u64) -> Timed {
    Timed {
        silent: "1",
        records: 80,
        keys: 8,
        records_per_second: 100_000,
        probe: format!("{{ heartbeat_ms = \"{heartbeat_ms}\" }}"),
        ..Timed::default()
    }
}

/// The alerts of a heartbeat job: `alert <key>` once per key it emits, sorted.
fn alerts(timed: &Timed) -> Vec<String> {
    let keys: std::collections::BTreeSet<String> =
        timed.records().into_iter().map(|(key, _)| key).collect();
    keys.into_iter().map(|key| format!("alert {key}")).collect()
}

#[test]
fn a_no_heartbeat_alert_fires_on_an_idle_key() {
    let dir = Dir::new(0);
    let timed = heartbeats(300);
    let (job, expected) = (timed.write(&dir), alerts(&timed));
    let running = start(&dir, &job, None);
    stop_once_committed(&dir, running, &expected);
}

#[test]
fn an_overdue_alert_fires_at_once_after_a_restore_past_its_due_time() {
    let dir = Dir::new(0);
    let heartbeat = Duration::from_millis(4_000);
    let timed = heartbeats(heartbeat.as_millis() as u64);
    let (job, expected) = (timed.write(&dir), alerts(&timed));
    let keys = expected.len() as u64;
    let running = start(&dir, &job, None);
    wait_until("a processing-time timer for every key", || {
        let probes = time_of(&dir, &running.job, "probe");
        probes.iter().map(|(_, timers)| timers).sum::<u64>() == keys
    });
    let point = dir.save_and_stop(running);
    assert_eq!(pending_in(&dir, &job, &point, "probe"), (0, keys));
    assert!(
        dir.committed_output().is_empty(),
        "no alert before the restore"
    );
    // Every alert is due by now: the restored job fires them as it starts.
    std::thread::sleep(heartbeat);
    let running = start(&dir, &job, Some(&point));
    stop_once_committed(&dir, running, &expected);
}

/// Runs `timed` on 2 probe subtasks, then 3, then 1, each from the previous one's savepoint
/// (taken once it committed more), the last to the end.
pub(crate) fn through_rescale_2_3_1(dir: &Dir, timed: &Timed) {
    let mut from: Option<String> = None;
    for probes in [2, 3] {
        let job = Timed {
            probe_parallelism: probes,
            ..timed.clone()
        }
        .write(dir);
        if let Some(point) = &from {
            let check = dir.host_ok(&["check", &job, "--from", point]);
            assert!(check.contains("probe: parallelism"), "{check}");
            assert!(check.contains("timers pending"), "{check}");
        }
        let committed = dir.committed_output().len();
        let running = start(dir, &job, from.as_deref());
        wait_for_output_past(dir, committed);
        from = Some(dir.save_and_stop(running));
    }
    let job = Timed {
        probe_parallelism: 1,
        ..timed.clone()
    }
    .write(dir);
    start(dir, &job, from.as_deref()).wait_ok();
}

#[test]
fn timers_move_with_their_key_groups_from_2_to_3_to_1() {
    let dir = Dir::new(0);
    let timed = Timed::default();
    through_rescale_2_3_1(&dir, &timed);
    assert_output(&dir, &timed.model(100));
}

#[test]
fn window_timers_move_with_their_keys_through_a_repartition_from_128_to_256_groups() {
    // Windows kept by the SDK (the portable envelope), each with its timer at the host; the
    // input spans one window, which fires when the input ends: every timer is pending at the
    // savepoint.
    let windows = Timed {
        probe: "{}".to_owned(),
        probe_module: guest("window_count_v1"),
        records_per_second: 1_000,
        ..Timed::default()
    };
    let whole = Dir::new(0);
    start(&whole, &windows.write(&whole), None).wait_ok();
    let expected = sorted_output(&whole);
    assert!(expected.len() >= windows.keys as usize, "{expected:?}");

    let dir = Dir::new(0);
    let job = windows.write(&dir);
    let running = start(&dir, &job, None);
    let id = running.job.clone();
    wait_until("timers pending", || {
        time_of(&dir, &id, "probe")
            .iter()
            .map(|(_, timers)| timers)
            .sum::<u64>()
            > 0
    });
    let point = dir.save_and_stop(running);
    let pending = pending_in(&dir, &job, &point, "probe");
    assert!(
        pending.0 > 0,
        "no event-time timer pending at the savepoint"
    );
    dir.repartition(&point, 256, "wider");
    let wider = Timed {
        probe_parallelism: 3,
        ..windows.clone()
    }
    .write(&dir);
    let text = std::fs::read_to_string(&wider).unwrap();
    std::fs::write(&wider, format!("max_parallelism = 256\n{text}")).unwrap();
    // (`wider` is written over `job`: the same file name.)
    assert_eq!(
        pending_in(&dir, &wider, "wider", "probe"),
        pending,
        "every timer placed again"
    );
    start(&dir, &wider, Some("wider")).wait_ok();
    assert_output(&dir, &expected);
}

/// Runs `timed` until it committed a window, then upgrades its probe live (`host upgrade`) to
/// `module`, which must restore the running one's state, and lets the job run to the end.
pub(crate) fn through_a_live_upgrade(dir: &Dir, timed: &Timed, module: &Path) {
    let job = timed.write(dir);
    let running = start(dir, &job, None);
    wait_for_output_past(dir, 0);
    let upgraded = dir.host_ok(&[
        "upgrade",
        &running.job,
        "--operator",
        "probe",
        "--module",
        module.to_str().unwrap(),
        "--canary-records",
        "100",
        "--canary-ms",
        "100",
    ]);
    assert!(upgraded.contains("upgraded operator `probe`"), "{upgraded}");
    running.wait_ok();
}

#[test]
fn timers_registered_before_a_live_upgrade_fire_in_the_new_module() {
    let dir = Dir::new(0);
    let timed = Timed::default();
    // Another file of the same module: the swap restores it from the running one's state,
    // and the timers stay with the subtasks.
    let v2 = dir.path().join("timer_probe_v2.wasm");
    std::fs::copy(guest("timer_probe"), &v2).unwrap();
    through_a_live_upgrade(&dir, &timed, &v2);
    assert_output(&dir, &timed.model(100));
}

#[test]
fn event_time_windows_on_2_workers_fire_mid_run_and_equal_the_model_through_a_savepoint() {
    let dir = Dir::new(0);
    let timed = Timed::default();
    let job = timed.write(&dir);
    // The key-by edge crosses workers: windows fire only as the watermark, carried in band
    // from the other worker's source, passes them; some do while the source still runs (the
    // job is stopped with a savepoint after).
    let running = dir.start(&[&job, "--workers", "2"]);
    wait_for_output_past(&dir, 0);
    let point = dir.save_and_stop(running);
    let (pending, _) = pending_in(&dir, &job, &point, "probe");
    assert!(pending > 0, "the savepoint holds the open windows' timers");
    dir.start(&[&job, "--from", &point, "--workers", "2"])
        .wait_ok();
    assert_output(&dir, &timed.model(100));
}
