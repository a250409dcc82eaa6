//! Each phase of a checkpoint and of a resume where the host can crash, struck deterministically
//! with `--crash-at PHASE:N`: the host must abort itself there (not before, not after, not
//! never), leave on disk what that phase claims, and a resume must then lose and repeat
//! nothing. The torture strikes the same phases at random moments; these tests pin each one.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};

use crate::util::{Dir, WordCount, assert_exactly_once, assert_same_tree, input_text};

const LINES: usize = 3_000;
/// The checkpoint the crash is aimed at.
const N: u64 = 3;
/// What `std::process::abort` ends the process with.
const SIGABRT: i32 = 6;
/// The sink's subtasks.
const SINKS: [u32; 2] = [0, 1];

/// A word count, checkpointing every 100 ms, with two sink subtasks.
fn word_count(dir: &Dir) -> String {
    let job = dir.write_job(&WordCount {
        checkpoint_interval_ms: 100,
        sink_parallelism: SINKS.len() as u32,
        ..WordCount::default()
    });
    job.to_str().unwrap().to_owned()
}

/// Runs `host run ARGS --crash-at PHASE:FROM` and asserts that the host aborted itself
/// (SIGABRT) at `phase` of checkpoint `N`, and nowhere else (subtasks that reach the phase
/// together may each report it before the process dies); returns the id of the crashed job.
fn crash_at(dir: &Dir, args: &[&str], phase: &str, from: u64) -> String {
    let crash_at = format!("{phase}:{from}");
    let running = dir.start(&[args, &["--crash-at", &crash_at]].concat());
    let job = running.job.clone();
    let (status, stderr) = running.wait_status();
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "{phase}: {status}\n{stderr}"
    );
    let wanted = format!("crash injected at {phase} of checkpoint {N}");
    let mut struck = stderr.lines().filter(|l| l.contains("crash injected at"));
    let first = struck.next();
    assert!(
        first == Some(wanted.as_str()) && struck.all(|l| l == wanted),
        "expected `{wanted}`:\n{stderr}"
    );
    job
}

/// `run JOB_FILE --from JOB`, to the end of the input; the committed output is exact.
fn resume_exactly_once(dir: &Dir, job_file: &str, job: &str) {
    dir.start(&[job_file, "--from", job]).wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

/// The folder of `job`'s checkpoint `n` once published, or (`in_progress`) while written.
fn checkpoint(dir: &Dir, job: &str, n: u64, in_progress: bool) -> PathBuf {
    let name = match in_progress {
        true => format!(".in-progress-{n}"),
        false => n.to_string(),
    };
    dir.home()
        .join("jobs")
        .join(job)
        .join("checkpoints")
        .join(name)
}

/// Sink subtask `subtask`'s committed (visible) part file of checkpoint `n`.
fn part(dir: &Dir, n: u64, subtask: u32) -> PathBuf {
    dir.path()
        .join(format!("output/part-{n:012}-{subtask}.txt"))
}

/// Sink subtask `subtask`'s part file of checkpoint `n`, prepared and not yet committed.
fn pending(dir: &Dir, n: u64, subtask: u32) -> PathBuf {
    dir.path()
        .join(format!("output/.staging/{subtask}-{n}.pending"))
}

/// The names of the files in `folder`, none if it does not exist.
fn names(folder: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let names = entries.map(|e| e.unwrap().file_name().into_string().unwrap());
    names.collect()
}

/// Which sink subtasks have committed checkpoint `n`; each of the others must still hold it
/// pending (a commit is a rename: the part is in exactly one of the two places).
fn committed_sinks(dir: &Dir, n: u64) -> Vec<u32> {
    for subtask in SINKS {
        let (part, pending) = (part(dir, n, subtask), pending(dir, n, subtask));
        assert!(
            part.exists() != pending.exists(),
            "sink {subtask}: {} and {} both exist or both are missing",
            part.display(),
            pending.display()
        );
    }
    SINKS
        .into_iter()
        .filter(|&s| part(dir, n, s).exists())
        .collect()
}

#[test]
fn a_crash_halfway_through_a_state_file_publishes_nothing_and_loses_nothing() {
    let dir = Dir::new(LINES);
    let job_file = word_count(&dir);
    let job = crash_at(&dir, &[&job_file], "state-write", N);
    let writing = checkpoint(&dir, &job, N, true);
    let files = names(&writing);
    assert!(
        files.iter().any(|f| f.ends_with(".state")) && !files.contains(&"_metadata".to_owned()),
        "checkpoint {N} was not being written, or was complete: {files:?}"
    );
    assert!(!checkpoint(&dir, &job, N, false).exists());
    assert!(checkpoint(&dir, &job, N - 1, false).exists());
    resume_exactly_once(&dir, &job_file, &job);
}

#[test]
fn a_crash_after_writing_metadata_before_the_rename_publishes_nothing_and_loses_nothing() {
    let dir = Dir::new(LINES);
    let job_file = word_count(&dir);
    let job = crash_at(&dir, &[&job_file], "metadata-written", N);
    assert!(checkpoint(&dir, &job, N, true).join("_metadata").exists());
    assert!(!checkpoint(&dir, &job, N, false).exists());
    assert!(
        committed_sinks(&dir, N).is_empty(),
        "an unpublished point was committed"
    );
    resume_exactly_once(&dir, &job_file, &job);
}

#[test]
fn a_crash_between_publishing_a_checkpoint_and_committing_it_loses_nothing() {
    let dir = Dir::new(LINES);
    let job_file = word_count(&dir);
    // Only the resumed job can commit that checkpoint's output.
    let job = crash_at(&dir, &[&job_file], "published", N);
    assert!(checkpoint(&dir, &job, N, false).join("_metadata").exists());
    assert!(
        committed_sinks(&dir, N).is_empty(),
        "committed before the crash"
    );
    let before = dir.committed_output().len();
    resume_exactly_once(&dir, &job_file, &job);
    assert!(dir.committed_output().len() > before);
}

#[test]
fn a_crash_after_one_sink_committed_a_checkpoint_loses_and_repeats_nothing() {
    let dir = Dir::new(LINES);
    let job_file = word_count(&dir);
    let job = crash_at(&dir, &[&job_file], "sink-committed", N);
    assert!(checkpoint(&dir, &job, N, false).join("_metadata").exists());
    assert!(
        !committed_sinks(&dir, N).is_empty(),
        "no sink committed checkpoint {N}"
    );
    resume_exactly_once(&dir, &job_file, &job);
}

/// A first run crashed between publishing checkpoint `N` and committing it, so that a resume
/// has every sink's part of `N` to publish: returns the job file and the crashed job.
fn crashed_with_parts_pending(dir: &Dir) -> (String, String) {
    let job_file = word_count(dir);
    let job = crash_at(dir, &[&job_file], "published", N);
    assert!(committed_sinks(dir, N).is_empty());
    (job_file, job)
}

#[test]
fn a_crash_after_restoring_before_any_sink_recovered_leaves_the_output_untouched() {
    let dir = Dir::new(LINES);
    let (job_file, first) = crashed_with_parts_pending(&dir);
    let output = dir.path().join("output");
    let before = dir.snapshot_tree(&output);
    let resumed = crash_at(&dir, &[&job_file, "--from", &first], "restored", 1);
    assert_same_tree(
        &before,
        &dir.snapshot_tree(&output),
        "restored, no sink recovered",
    );
    resume_exactly_once(&dir, &job_file, &resumed);
}

#[test]
fn a_crash_after_one_sink_recovered_loses_and_repeats_nothing() {
    let dir = Dir::new(LINES);
    let (job_file, first) = crashed_with_parts_pending(&dir);
    let resumed = crash_at(&dir, &[&job_file, "--from", &first], "sink-recovered", 1);
    // A sink that recovered checkpoint N published its part of N and dropped what it had
    // written since. The other may have recovered as well before the abort landed (the sinks
    // recover side by side), but the resumed job went no further: it published no checkpoint.
    let recovered: Vec<_> = committed_sinks(&dir, N)
        .into_iter()
        .filter(|s| {
            !dir.path()
                .join(format!("output/.staging/{s}.current"))
                .exists()
        })
        .collect();
    assert!(!recovered.is_empty(), "no sink recovered checkpoint {N}");
    let published = names(&dir.home().join("jobs").join(&resumed).join("checkpoints"));
    assert!(
        published.iter().all(|name| name.parse::<u64>().is_err()),
        "the resumed job went on: {published:?}"
    );
    resume_exactly_once(&dir, &job_file, &resumed);
}
