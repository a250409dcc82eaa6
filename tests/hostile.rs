//! Guarantee 6: a guest that traps, loops, eats memory, floods the host or reaches outside its
//! grant fails its job cleanly, naming the operator; the host process survives it, other jobs
//! run on, and with a restart strategy the job recovers from its latest checkpoint.

use std::time::{Duration, Instant};

use crate::util::{Dir, WordCount, assert_exactly_once, input_text};

const LINES: usize = 2_000;

/// `host run`'s exit code when the job fails while running.
const FAILED_WHILE_RUNNING: i32 = 3;

/// Runs a word count with a hostile operator configured by `lines`; returns `host run`'s exit
/// code and stderr.
fn run_hostile(dir: &Dir, lines: &str, restart_attempts: u32) -> (Option<i32>, String) {
    run_hostile_in(dir, dir.path(), lines, restart_attempts)
}

fn run_hostile_in(
    dir: &Dir,
    folder: &std::path::Path,
    lines: &str,
    restart_attempts: u32,
) -> (Option<i32>, String) {
    let job = dir.write_job_in(
        folder,
        &WordCount {
            hostile: Some(lines.to_owned()),
            restart_attempts,
            lines_per_second: 4_000,
            ..WordCount::default()
        },
    );
    dir.start(&[job.to_str().unwrap()]).wait_code()
}

fn assert_failed_naming(outcome: (Option<i32>, String), needles: &[&str]) {
    let (code, stderr) = outcome;
    assert_eq!(
        code,
        Some(FAILED_WHILE_RUNNING),
        "the job should have failed while running:\n{stderr}"
    );
    for needle in needles {
        assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
    }
}

#[test]
fn a_looping_guest_is_interrupted_at_its_deadline() {
    let dir = Dir::new(LINES);
    let started = Instant::now();
    let outcome = run_hostile(
        &dir,
        "call_ms_max = 300\nconfig = { misbehave = \"loop\", after_records = 300 }",
        0,
    );
    assert_failed_naming(
        outcome,
        &[
            "job",
            "failed",
            "hostile[",
            "`process` trapped",
            "interrupt",
        ],
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the loop was not cut short"
    );
    assert!(dir.host_ok(&["list"]).contains("failed: hostile["));
}

#[test]
fn a_trapping_guest_fails_its_job_naming_the_operator() {
    let dir = Dir::new(LINES);
    let outcome = run_hostile(
        &dir,
        "config = { misbehave = \"trap\", after_records = 300 }",
        0,
    );
    assert_failed_naming(outcome, &["hostile[", "`process` trapped", "unreachable"]);
}

#[test]
fn a_guest_that_eats_memory_is_stopped_at_its_limit() {
    let dir = Dir::new(LINES);
    let outcome = run_hostile(
        &dir,
        "memory_bytes_max = 33554432\nconfig = { misbehave = \"grow-memory\" }",
        0,
    );
    assert_failed_naming(outcome, &["hostile[", "`process` trapped", "memory"]);
}

#[test]
fn a_guest_that_floods_the_host_is_stopped() {
    let dir = Dir::new(LINES);
    let outcome = run_hostile(
        &dir,
        "config = { misbehave = \"flood\", flood_records = 2000000 }",
        0,
    );
    assert_failed_naming(outcome, &["hostile[", "2000000 records, over the limit"]);
}

#[test]
fn a_guest_that_spams_its_output_cannot_flood_the_hosts_log() {
    let dir = Dir::new(LINES);
    let started = Instant::now();
    let (code, stderr) = run_hostile(&dir, "config = { misbehave = \"spam\" }", 0);
    // One-second windows the run can have touched.
    let windows = started.elapsed().as_secs() + 2;
    assert_eq!(code, Some(0), "the job should have run through:\n{stderr}");
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
    // Each `process` call wrote 10 000 lines; at most 100 a second from each of the 2 subtasks
    // reach the log, tagged.
    let logged = stderr.lines().filter(|l| l.contains("spam line")).count() as u64;
    assert!(logged > 0, "no guest line reached the log:\n{stderr}");
    assert!(
        logged <= 100 * 2 * windows,
        "{logged} guest lines logged in under {windows} s"
    );
    assert!(
        stderr.contains("subtask=hostile["),
        "lines not tagged with the subtask:\n{stderr}"
    );
    assert!(stderr.contains("dropping lines"), "{stderr}");
}

#[test]
fn a_guest_cannot_read_outside_its_grant() {
    let dir = Dir::new(LINES);
    let outcome = run_hostile(&dir, "config = { misbehave = \"escape\" }", 0);
    assert_failed_naming(
        outcome,
        &["hostile[", "`process` refused", "denied outside the grant"],
    );
}

#[test]
fn a_job_restarts_from_its_latest_checkpoint_and_loses_nothing() {
    let dir = Dir::new(LINES);
    // Each subtask traps once, after some checkpoints completed; the restarted job runs through.
    let lines = "config = { misbehave = \"trap\", after_records = 2500, once_marker = \"/scratch/tripped\" }";
    let (code, stderr) = run_hostile(&dir, lines, 3);
    assert_eq!(code, Some(0), "the job did not recover:\n{stderr}");
    assert!(
        dir.path().join("scratch/tripped").exists(),
        "the guest never trapped"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn restarts_give_up_after_the_configured_attempts() {
    let dir = Dir::new(LINES);
    let outcome = run_hostile(
        &dir,
        "config = { misbehave = \"trap\", after_records = 100 }",
        2,
    );
    assert_failed_naming(outcome, &["hostile[", "gave up after 2 restarts"]);
}

#[test]
fn a_hostile_job_leaves_other_jobs_untouched() {
    let dir = Dir::new(LINES);
    let good = dir.write_job(&WordCount::default());
    let running = dir.start(&[good.to_str().unwrap()]);
    // The hostile job shares the state folder, with its own input and output folders.
    let hostile = dir.path().join("hostile");
    let outcome = run_hostile_in(
        &dir,
        &hostile,
        "call_ms_max = 200\nconfig = { misbehave = \"loop\" }",
        0,
    );
    assert_failed_naming(outcome, &["interrupt"]);
    running.wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn a_snapshot_refusal_aborts_that_checkpoint_only() {
    let dir = Dir::new(LINES);
    let lines = "config = { misbehave = \"refuse-snapshot\", after_records = 1000, once_marker = \"/scratch/refused\" }";
    let (code, stderr) = run_hostile(&dir, lines, 0);
    assert_eq!(
        code,
        Some(0),
        "the job should run on past a refused snapshot:\n{stderr}"
    );
    assert!(
        stderr.contains("checkpoint aborted") && stderr.contains("refusing to snapshot"),
        "{stderr}"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

/// A snapshot holding a key group its subtask does not own is refused as it is taken in: the
/// checkpoint is never written, the job restarts from its latest one, and every point it
/// retains can be resumed from. (Taken in, the stray group would ride along in every later
/// checkpoint, each refused at restore.)
#[test]
fn a_snapshot_with_a_stray_key_group_fails_its_checkpoint_not_the_state() {
    let dir = Dir::new(LINES);
    let lines = "config = { misbehave = \"stray-key-group\", after_records = 1000, once_marker = \"/scratch/strayed\" }";
    let (code, stderr) = run_hostile(&dir, lines, 1);
    assert_eq!(code, Some(0), "the job did not recover:\n{stderr}");
    assert!(
        stderr.contains("outside the key groups")
            && stderr.contains("restarting from the latest checkpoint"),
        "{stderr}"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
    let job = dir.path().join("job.toml");
    let listed = dir.host_ok(&["list"]);
    let ran = listed.split_whitespace().next().expect("a job listed");
    let checked = dir.host(&["check", job.to_str().unwrap(), "--from", ran]);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "its latest point does not restore: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// Wasmtime would copy up to 128 MiB out of one call by default; the host bounds it at twice
/// the guest's memory limit (here 2 x 32 MiB), and 100 entries naming one 1 MiB buffer ask for
/// 100 MiB: refused before the copy, that checkpoint only.
#[test]
fn a_snapshot_of_aliased_buffers_is_refused_before_the_host_copies_them() {
    let dir = Dir::new(LINES);
    let lines = "memory_bytes_max = 33554432\nconfig = { misbehave = \"alias-snapshot\", alias_bytes = 1048576, alias_copies = 100, after_records = 1000, once_marker = \"/scratch/aliased\" }";
    let (code, stderr) = run_hostile(&dir, lines, 1);
    assert_eq!(code, Some(0), "the job did not recover:\n{stderr}");
    for needle in [
        "`snapshot` trapped",
        "handed the host more than 67108864 bytes in one call",
        "restarting from the latest checkpoint",
    ] {
        assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
    }
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn a_trap_in_snapshot_restarts_the_job_from_its_latest_checkpoint() {
    let dir = Dir::new(LINES);
    let lines = "config = { misbehave = \"trap-in-snapshot\", after_records = 1000, once_marker = \"/scratch/trapped\" }";
    let (code, stderr) = run_hostile(&dir, lines, 1);
    assert_eq!(code, Some(0), "the job did not recover:\n{stderr}");
    assert!(
        stderr.contains("`snapshot` trapped")
            && stderr.contains("restarting from the latest checkpoint"),
        "{stderr}"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn a_guest_sees_the_real_clock_only_when_granted() {
    let dir = Dir::new(LINES);
    let frozen = run_hostile(&dir, "config = { misbehave = \"read-clock\" }", 0);
    assert_failed_naming(frozen, &["the clock reads 0 s since the epoch"]);
    let (code, stderr) = run_hostile(
        &dir,
        "clock = true\nconfig = { misbehave = \"read-clock\" }",
        0,
    );
    assert!(
        code == Some(FAILED_WHILE_RUNNING)
            && stderr.contains("the clock reads 1")
            && !stderr.contains("reads 0 s"),
        "{stderr}"
    );
}

#[test]
fn a_guest_gets_the_same_random_bytes_in_every_run() {
    let dir = Dir::new(LINES);
    // One hostile subtask, so that the same subtask reports in both runs.
    let seeded = |sub: &str| {
        let job = dir.write_job_in(
            &dir.path().join(sub),
            &WordCount {
                hostile: Some("config = { misbehave = \"read-random\" }".to_owned()),
                tokenizer_parallelism: 1,
                ..WordCount::default()
            },
        );
        let (code, stderr) = dir.start(&[job.to_str().unwrap()]).wait_code();
        assert_eq!(code, Some(FAILED_WHILE_RUNNING), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("random-seeded hash"))
            .unwrap()
            .to_owned();
        line[line.find("hostile[").unwrap()..].to_owned()
    };
    let first = seeded("first");
    assert_eq!(
        seeded("second"),
        first,
        "wasi:random differed between two runs"
    );
}

#[test]
fn a_trap_in_restore_is_a_clear_start_up_error_and_the_savepoint_is_untouched() {
    let dir = Dir::new(LINES);
    let calm = dir.write_job(&WordCount {
        hostile: Some("config = { misbehave = \"none\" }".to_owned()),
        ..WordCount::default()
    });
    let (savepoint, folder) = dir.run_then_stop_with_savepoint(&calm, 400);
    let before = dir.snapshot_tree(&folder);

    let trapping = dir.write_job(&WordCount {
        hostile: Some("config = { misbehave = \"trap-in-restore\" }".to_owned()),
        restart_attempts: 3,
        ..WordCount::default()
    });
    let stderr = dir.host_err(&["run", trapping.to_str().unwrap(), "--from", &savepoint]);
    assert!(
        stderr.contains("operator `hostile` (subtask 0)") && stderr.contains("`restore` trapped"),
        "{stderr}"
    );
    assert_eq!(before, dir.snapshot_tree(&folder), "the savepoint changed");
    // The same savepoint still restores into modules that accept it.
    let calm = dir.write_job(&WordCount {
        hostile: Some("config = { misbehave = \"none\" }".to_owned()),
        ..WordCount::default()
    });
    assert!(
        dir.host_ok(&["check", calm.to_str().unwrap(), "--from", &savepoint])
            .starts_with("ok:")
    );
}
