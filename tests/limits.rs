//! Guarantee 6, the limits: an operator's `call_ms_max` and `memory_bytes_max` are the limits
//! its guest runs under. Each test runs the same guest just under the configured value (it runs
//! through, its output exact) and over it (it fails there, naming the operator), with a value
//! far enough from the default that the test fails if the setting were ignored.

use std::time::{Duration, Instant};

use crate::util::{Dir, WordCount, assert_exactly_once, committed_output_in, input_text};

const LINES: usize = 2_000;

/// `host run`'s exit code when the job fails while running.
const FAILED_WHILE_RUNNING: i32 = 3;

/// The default `call_ms_max` (docs/operations.md, the job file).
const DEFAULT_CALL_MS_MAX: u64 = 10_000;

/// The default `memory_bytes_max` (docs/operations.md, the job file).
const DEFAULT_MEMORY_BYTES_MAX: u64 = 256 << 20;

const MIB: u64 = 1 << 20;

/// How one run of a word count with a `hostile` operator ended.
struct Run {
    code: Option<i32>,
    stderr: String,
    /// From starting `host run` to its exit.
    elapsed: Duration,
}

/// Runs a word count in `dir`'s subfolder `sub` (its own input and output, the shared state
/// folder and so the shared compiled-module cache) with a `hostile` operator configured by
/// `lines`.
fn run(dir: &Dir, sub: &str, lines: &str) -> Run {
    let job = dir.write_job_in(
        &dir.path().join(sub),
        &WordCount {
            hostile: Some(lines.to_owned()),
            lines_per_second: 4_000,
            ..WordCount::default()
        },
    );
    let started = Instant::now();
    let (code, stderr) = dir.start(&[job.to_str().unwrap()]).wait_code();
    Run {
        code,
        stderr,
        elapsed: started.elapsed(),
    }
}

fn assert_ran_through(dir: &Dir, sub: &str, run: &Run) {
    assert_eq!(
        run.code,
        Some(0),
        "the job should have run through:\n{}",
        run.stderr
    );
    assert_exactly_once(
        &committed_output_in(&dir.path().join(sub)),
        &input_text(LINES),
    );
}

fn assert_failed_naming(run: &Run, needles: &[&str]) {
    assert_eq!(
        run.code,
        Some(FAILED_WHILE_RUNNING),
        "the job should have failed while running:\n{}",
        run.stderr
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "expected `{needle}` in:\n{}",
            run.stderr
        );
    }
}

/// The number after `prefix` in the first line of `text` that has both it and `marker`.
fn number_after(text: &str, marker: &str, prefix: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|l| l.contains(marker) && l.contains(prefix))?;
    let rest = &line[line.find(prefix)? + prefix.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[test]
fn a_call_ms_max_below_the_default_lets_shorter_calls_finish_and_interrupts_longer_ones_at_it() {
    // A tenth of the default: if the setting were ignored, the long call below would be
    // interrupted only at the default 10 s, far past what this test allows.
    const CALL_MS_MAX: u64 = 1_000;
    let dir = Dir::new(LINES);
    // Under: one call per subtask busy for a quarter of the limit, timed on the real clock
    // (granted), so a loaded machine makes it neither shorter nor longer. This run also fills
    // the compiled-module cache, so that the timed run below starts fast.
    let under = run(
        &dir,
        "under",
        &format!(
            "clock = true\ncall_ms_max = {CALL_MS_MAX}\n\
             config = {{ misbehave = \"work\", work_ms = {} }}",
            CALL_MS_MAX / 4
        ),
    );
    assert_ran_through(&dir, "under", &under);

    // Over: a call that would outlast even the default deadline.
    let over = run(
        &dir,
        "over",
        &format!(
            "clock = true\ncall_ms_max = {CALL_MS_MAX}\n\
             config = {{ misbehave = \"work\", work_ms = {} }}",
            DEFAULT_CALL_MS_MAX * 6
        ),
    );
    assert_failed_naming(&over, &["hostile[", "`process` trapped", "interrupt"]);
    // It ran at least the limit (the call started after `host run` did)…
    assert!(
        over.elapsed >= Duration::from_millis(CALL_MS_MAX),
        "interrupted after {:?}, before the {CALL_MS_MAX} ms limit:\n{}",
        over.elapsed,
        over.stderr
    );
    // …and was interrupted long before the default deadline.
    assert!(
        over.elapsed < Duration::from_millis(DEFAULT_CALL_MS_MAX / 2),
        "interrupted after {:?}: the {CALL_MS_MAX} ms limit was not applied",
        over.elapsed
    );
}

#[test]
fn a_memory_bytes_max_below_the_default_lets_a_guest_allocate_under_it_and_traps_one_over_it() {
    // A quarter of the default: if the setting were ignored, the allocation over it would
    // succeed.
    const MEMORY_BYTES_MAX: u64 = 64 * MIB;
    // What the guest's linear memory holds besides the allocation: 1.1 MiB when measured (its
    // stack, data and the batches it handles), checked below.
    const BASELINE_MAX: u64 = 8 * MIB;
    let dir = Dir::new(LINES);
    let config = |bytes: u64| {
        format!(
            "memory_bytes_max = {MEMORY_BYTES_MAX}\n\
             config = {{ misbehave = \"allocate\", allocate_bytes = {bytes} }}"
        )
    };

    let under = run(&dir, "under", &config(MEMORY_BYTES_MAX - BASELINE_MAX));
    assert_ran_through(&dir, "under", &under);
    // The guest logs its memory before and with the allocation: the margin held, and the
    // allocation was real.
    let before = number_after(&under.stderr, "before allocating", "linear memory is ")
        .unwrap_or_else(|| panic!("the guest did not log its memory:\n{}", under.stderr));
    assert!(
        before < BASELINE_MAX,
        "the guest's baseline of {before} bytes leaves no room under the limit"
    );
    let with = number_after(&under.stderr, "allocated", "linear memory is ")
        .unwrap_or_else(|| panic!("the guest did not log its allocation:\n{}", under.stderr));
    assert!(
        (MEMORY_BYTES_MAX - BASELINE_MAX..=MEMORY_BYTES_MAX).contains(&with),
        "linear memory of {with} bytes with the allocation"
    );

    let over = run(&dir, "over", &config(MEMORY_BYTES_MAX + 8 * MIB));
    assert_failed_naming(
        &over,
        &["hostile[", "`process` trapped", "growing memory to"],
    );
    // It was stopped growing past the configured limit to a size the default allows: only the
    // setting can have stopped it.
    let desired = number_after(&over.stderr, "hostile[", "growing memory to ").unwrap();
    assert!(
        desired > MEMORY_BYTES_MAX && desired < DEFAULT_MEMORY_BYTES_MAX,
        "stopped growing to {desired} bytes"
    );
}

#[test]
fn a_guest_blocked_in_a_host_call_is_interrupted_at_its_deadline() {
    const CALL_MS_MAX: u64 = 1_000;
    let dir = Dir::new(LINES);
    // A first run fills the compiled-module cache, so that the timed run below starts fast.
    let warm = run(&dir, "warm", "config = { misbehave = \"none\" }");
    assert_ran_through(&dir, "warm", &warm);
    // One call per subtask sleeps five times the limit: no computing, so no epoch check fires
    // until the sleep returns.
    let slept = run(
        &dir,
        "sleep",
        &format!(
            "call_ms_max = {CALL_MS_MAX}\nconfig = {{ misbehave = \"sleep\", sleep_ms = {} }}",
            CALL_MS_MAX * 5
        ),
    );
    // Failing it at the default limit would not do: the sleep ends before that.
    assert_failed_naming(
        &slept,
        &[
            "hostile[",
            "`process` trapped",
            "deadline of 1000 ms",
            "blocked outside WebAssembly",
        ],
    );
    assert!(
        slept.elapsed < Duration::from_millis(CALL_MS_MAX * 4),
        "interrupted after {:?}: the sleep of 5 s ran its course",
        slept.elapsed
    );
}
