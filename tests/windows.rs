//! The SDKs' windows under the real host: `window-count` (guest-examples, in Rust, Python and
//! JavaScript), an event-time tumbling count per key over out-of-order input (disorder within
//! the watermark's bound), emits exactly the windows of a model computed without the host,
//! through a savepoint resumed by version 2 (`run --from`), `kill -9` and resume, rescaling
//! 2 -> 3 -> 1, and a live `host upgrade` v1 -> v2. The jobs and the scenarios are the time
//! tests' (`tests/time.rs`), with the window operator in the timer probe's place.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::time::{
    Timed, assert_lines, assert_output, start, through_a_live_upgrade, through_rescale_2_3_1,
    through_save_and_kill_9,
};
use crate::util::{Dir, guest};

/// `window-count`'s windows: tumbling, 10 s.
const WINDOW_MS: i64 = 10_000;

/// The languages `window-count` is written in.
#[derive(Clone, Copy)]
enum Language {
    Rust,
    Python,
    JavaScript,
}

impl Language {
    /// `window-count` version `version` (1 or 2) in this language.
    fn module(self, version: u32) -> PathBuf {
        let suffix = match self {
            Language::Rust => "",
            Language::Python => "_py",
            Language::JavaScript => "_js",
        };
        guest(&format!("window_count_v{version}{suffix}"))
    }
}

/// The generator (2 subtasks, records 50 ms apart from 10 s on, over 20 keys, out of order by
/// up to 2 s, the watermark's bound) -> `window-count` `version` -> the file sink: 16 windows
/// of 10 s, about 10 records per key per window; at 500 records a second, the first window
/// fires after about half a second, and the input ends after 6. (Event time starts at 10 s:
/// a JavaScript operator cannot set a timer at a negative time, see below.)
fn windowed(language: Language, version: u32) -> Timed {
    Timed {
        records: 3_000,
        keys: 20,
        step_ms: 50,
        start_ms: 10_000,
        disorder_ms: 2_000,
        watermark: "{ out_of_orderness_ms = 2000 }",
        probe: "{}".to_owned(),
        probe_module: language.module(version),
        ..Timed::default()
    }
}

/// What version 1 emits for `timed`'s records, sorted: `<key> <start> <end> count=<n>`.
fn model(timed: &Timed) -> Vec<String> {
    let counts = timed.counts(WINDOW_MS).into_iter();
    let mut lines: Vec<String> = counts
        .map(|((key, start), n)| format!("{key} {start} {} count={n}", start + WINDOW_MS))
        .collect();
    lines.sort();
    lines
}

/// Which module emitted a window, and whether version 2 found it open in version 1's state.
#[derive(Debug, Default, PartialEq)]
struct Versions {
    /// Lines version 1 emitted (no sum).
    v1: usize,
    /// Lines version 2 emitted for windows version 1 opened (`sum=unknown`).
    v1_window_in_v2: usize,
    /// Lines version 2 emitted for windows it opened (`sum=0`: the generator's values are
    /// empty).
    v2: usize,
}

/// The committed output of a job upgraded from version 1 to 2, each line's ` sum=...` taken
/// off, sorted; and how many lines each version wrote.
fn across_the_upgrade(dir: &Dir) -> (Vec<String>, Versions) {
    let mut versions = Versions::default();
    let mut lines: Vec<String> = dir
        .committed_output()
        .into_iter()
        .map(|line| match line.split_once(" sum=") {
            None => {
                versions.v1 += 1;
                line
            }
            Some((window, "unknown")) => {
                versions.v1_window_in_v2 += 1;
                window.to_owned()
            }
            Some((window, "0")) => {
                versions.v2 += 1;
                window.to_owned()
            }
            Some(_) => panic!("a sum that is neither unknown nor 0: {line}"),
        })
        .collect();
    lines.sort();
    (lines, versions)
}

/// Asserts the output of a job upgraded from version 1 to 2 holds every window of the model
/// once, and that each version emitted some, version 2 some that version 1 opened (their
/// state and timers carried over).
fn assert_upgraded(dir: &Dir, timed: &Timed) {
    let (lines, versions) = across_the_upgrade(dir);
    assert_lines(lines, &model(timed));
    assert!(
        versions.v1 > 0 && versions.v1_window_in_v2 > 0 && versions.v2 > 0,
        "{versions:?}"
    );
}

/// Version 1 until a savepoint, version 2 from it (`run --from`), `kill -9`, resumed.
fn save_upgrade_and_kill_9(language: Language) {
    let dir = Dir::new(0);
    let v1 = windowed(language, 1);
    through_save_and_kill_9(&dir, &v1, &windowed(language, 2));
    assert_upgraded(&dir, &v1);
}

/// Version 1 on 2, 3 then 1 subtasks, through savepoints.
fn rescale_2_3_1(language: Language) {
    let dir = Dir::new(0);
    let v1 = windowed(language, 1);
    through_rescale_2_3_1(&dir, &v1);
    assert_output(&dir, &model(&v1));
}

/// `window-count` v1 with 5 s of allowed lateness, its late records sent on, behind 1 source
/// subtask (so that the watermark each late record meets is known: see [`with_lateness`])
/// whose every 50th record is stamped 9 s earlier still, in a poll of its own.
fn late_records(language: Language) -> Timed {
    Timed {
        source_parallelism: 1,
        late_every: 50,
        late_by_ms: 9_000,
        probe: "{ allowed_lateness_ms = \"5000\", late_output = \"true\" }".to_owned(),
        ..windowed(language, 1)
    }
}

/// What a model of the SDK's windows emits for `timed`'s records with `lateness` ms allowed,
/// the watermark `bound` ms behind the greatest timestamp, sorted; and how many records were
/// dropped (too late: each an empty line, the side output's value) and how many updated a
/// window already emitted. A record on time (disorder within the bound) is never late; a late
/// record meets the watermark of the records before it (it starts a poll of its own).
fn with_lateness(timed: &Timed, lateness: i64, bound: i64) -> (Vec<String>, usize, usize) {
    let line =
        |key: &str, start: i64, n: u64| format!("{key} {start} {} count={n}", start + WINDOW_MS);
    // By key and start: the count, and whether the window was emitted.
    let mut windows: BTreeMap<(String, i64), (u64, bool)> = BTreeMap::new();
    let (mut lines, mut dropped, mut updates) = (Vec::new(), 0, 0);
    let mut greatest = i64::MIN;
    for (i, (key, t)) in timed.records().into_iter().enumerate() {
        let watermark = greatest.saturating_sub(bound + 1);
        greatest = greatest.max(t);
        let start = t.div_euclid(WINDOW_MS) * WINDOW_MS;
        let last = start + WINDOW_MS - 1;
        let (n, emitted) = windows.entry((key.clone(), start)).or_default();
        if !timed.is_late(i as u64) || watermark < last {
            *n += 1;
        } else if last + lateness <= watermark {
            dropped += 1;
            lines.push(String::new());
        } else {
            if !*emitted && *n > 0 {
                lines.push(line(&key, start, *n));
            }
            (*n, *emitted) = (*n + 1, true);
            updates += 1;
            lines.push(line(&key, start, *n));
        }
    }
    let unemitted = windows
        .into_iter()
        .filter(|(_, (n, emitted))| *n > 0 && !emitted);
    lines.extend(unemitted.map(|((key, start), (n, _))| line(&key, start, n)));
    lines.sort();
    (lines, dropped, updates)
}

/// Late records within the lateness update their window, beyond it are dropped and sent on,
/// as the model says.
fn late_records_update_or_go_to_the_side_output(language: Language) {
    let dir = Dir::new(0);
    let timed = late_records(language);
    start(&dir, &timed.write(&dir), None).wait_ok();
    let (expected, dropped, updates) = with_lateness(&timed, 5_000, 2_000);
    assert!(
        dropped > 0 && updates > 0,
        "{dropped} dropped, {updates} updates"
    );
    assert_output(&dir, &expected);
}

#[test]
fn rust_late_records_within_the_lateness_update_their_window_and_beyond_it_are_dropped_and_sent_on()
{
    late_records_update_or_go_to_the_side_output(Language::Rust);
}

#[test]
fn python_late_records_within_the_lateness_update_their_window_and_beyond_it_are_dropped_and_sent_on()
 {
    late_records_update_or_go_to_the_side_output(Language::Python);
}

#[test]
fn javascript_late_records_within_the_lateness_update_their_window_and_beyond_it_are_dropped_and_sent_on()
 {
    late_records_update_or_go_to_the_side_output(Language::JavaScript);
}

#[test]
fn rust_windows_equal_a_model_through_save_run_from_v2_and_kill_9() {
    save_upgrade_and_kill_9(Language::Rust);
}

#[test]
fn python_windows_equal_a_model_through_save_run_from_v2_and_kill_9() {
    save_upgrade_and_kill_9(Language::Python);
}

#[test]
fn javascript_windows_equal_a_model_through_save_run_from_v2_and_kill_9() {
    save_upgrade_and_kill_9(Language::JavaScript);
}

#[test]
fn rust_windows_equal_a_model_through_rescale_2_3_1() {
    rescale_2_3_1(Language::Rust);
}

#[test]
fn python_windows_equal_a_model_through_rescale_2_3_1() {
    rescale_2_3_1(Language::Python);
}

#[test]
fn javascript_windows_equal_a_model_through_rescale_2_3_1() {
    rescale_2_3_1(Language::JavaScript);
}

/// Version 1 upgraded live to version 2 mid-run: v2 emits the windows v1 opened.
fn live_upgrade(language: Language) {
    let dir = Dir::new(0);
    // v2 compiled first, as `host compile` does before an upgrade: a Python or JavaScript
    // component's cold compile (tens of seconds) could outlast the job it upgrades.
    dir.host_ok(&["compile", language.module(2).to_str().unwrap()]);
    let v1 = windowed(language, 1);
    through_a_live_upgrade(&dir, &v1, &language.module(2));
    assert_upgraded(&dir, &v1);
}

#[test]
fn rust_windows_and_their_timers_carry_over_a_live_upgrade_to_v2() {
    live_upgrade(Language::Rust);
}

#[test]
fn python_windows_and_their_timers_carry_over_a_live_upgrade_to_v2() {
    live_upgrade(Language::Python);
}

#[test]
fn javascript_windows_and_their_timers_carry_over_a_live_upgrade_to_v2() {
    live_upgrade(Language::JavaScript);
}

#[test]
fn a_javascript_window_operator_refuses_a_negative_time_with_an_error_naming_it() {
    // componentize-js aborts a component that passes a negative `s64` to an import
    // (bytecodealliance/ComponentizeJS#343): the SDK refuses such a timer first, so the job
    // fails with the reason rather than a wasm trap. (The Rust and Python window operators
    // take negative times: sdk/js/tests/components.test.js.)
    let dir = Dir::new(0);
    let timed = Timed {
        start_ms: 0,
        records: 200,
        ..windowed(Language::JavaScript, 1)
    };
    let (code, stderr) = start(&dir, &timed.write(&dir), None).wait_code();
    assert_eq!(code, Some(3), "{stderr}");
    for needle in [
        "probe[",
        "cannot set a timer at a negative time (",
        "ComponentizeJS#343",
    ] {
        assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
    }
}
