//! Guarantees 7 and 8: a dry run and a refused command change nothing, anywhere; everything
//! that decides where a key's state lives is recorded with the state and checked; a point
//! that cannot be used whole is refused, never half used. (Issue 8, each case first seen
//! failing on the main it was filed against.)

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use host::store::metadata;

use crate::module_cache::holds_module;
use crate::util::{
    Dir, WordCount, assert_exactly_once, assert_same_tree, first_line, guest, input_text,
    replace_in,
};

const LINES: usize = 2_000;

/// A word count that runs for about `seconds` at its default rate.
fn slow_job(dir: &Dir, seconds: u64) -> std::path::PathBuf {
    dir.write_job(&WordCount {
        lines_per_second: LINES as u64 / seconds,
        checkpoint_interval_ms: 200,
        ..WordCount::default()
    })
}

/// Waits until the job has committed output of a checkpoint after the one `savepoint` took.
fn wait_for_output_past(dir: &Dir, parts: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while part_files(dir) <= parts {
        assert!(std::time::Instant::now() < deadline, "no output came");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn part_files(dir: &Dir) -> usize {
    std::fs::read_dir(dir.path().join("output"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("part-")
        })
        .count()
}

#[test]
fn check_and_refused_runs_beside_a_running_job_change_nothing_and_its_output_stays_exact() {
    let dir = Dir::new(LINES);
    // Slow enough to be running still when the commands below have run, however loaded the
    // machine: it is stopped with a savepoint and finished fast once they have.
    let job = slow_job(&dir, 120);
    let running = dir.start(&[job.to_str().unwrap()]);
    let savepoint = dir.save(&running.job);
    wait_for_output_past(&dir, part_files(&dir) + 2);
    let jobs_before = dir.host_ok(&["list"]);
    assert!(jobs_before.contains("running"), "{jobs_before}");
    let cache = dir.snapshot_tree(&dir.home().join("cache"));

    // `check` instantiates and restores every module, the sink too, against the real output
    // folder; it reports the running job writing that folder, and changes no file.
    let stderr = dir.refused_beside_running(
        &running.job,
        &["check", job.to_str().unwrap(), "--from", &savepoint],
    );
    assert!(
        stderr.contains("is still running") && stderr.contains("also written by running job"),
        "{stderr}"
    );
    // A second writer of the folder is refused before anything is built.
    let stderr = dir.refused_beside_running(&running.job, &["run", job.to_str().unwrap()]);
    assert!(
        stderr.contains(&format!("also written by running job `{}`", running.job)),
        "{stderr}"
    );
    let stderr = dir.refused_beside_running(
        &running.job,
        &["run", job.to_str().unwrap(), "--from", &savepoint],
    );
    assert!(
        stderr.contains(&format!("job `{}`, which is still running", running.job)),
        "{stderr}"
    );

    assert_eq!(
        dir.host_ok(&["list"]),
        jobs_before,
        "a refused command recorded a job"
    );
    assert_same_tree(
        &cache,
        &dir.snapshot_tree(&dir.home().join("cache")),
        "check",
    );
    let stopped_at = dir.save_and_stop(running);
    let fast = slow_job(&dir, 1);
    dir.start(&[fast.to_str().unwrap(), "--from", &stopped_at])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn check_after_the_job_ended_leaves_every_folder_byte_for_byte_the_same() {
    let dir = Dir::new(LINES);
    let job = slow_job(&dir, 3);
    let running = dir.start(&[job.to_str().unwrap()]);
    let savepoint = dir.save(&running.job);
    running.wait_ok();
    let before = dir.snapshot_tree(dir.path());
    let output = dir.host_ok(&["check", job.to_str().unwrap(), "--from", &savepoint]);
    assert!(output.starts_with("ok:"), "{output}");
    assert_same_tree(&before, &dir.snapshot_tree(dir.path()), "check");

    // Against a state folder that does not exist, from the savepoint's folder: not created.
    let elsewhere = dir.path().join("no-such-home");
    let folder = dir.home().join("savepoints").join(&savepoint);
    let job = job.to_str().unwrap();
    let home = elsewhere.to_str().unwrap();
    let output = dir.host_ok(&[
        "--home",
        home,
        "check",
        job,
        "--from",
        folder.to_str().unwrap(),
    ]);
    assert!(output.starts_with("ok:"), "{output}");
    assert!(!elsewhere.exists(), "check created the state folder");
}

/// Two `host run` processes started at once on one job file (so one output folder): the
/// start lock admits exactly one; the other is refused, naming the winner. Real processes,
/// racing from their first instruction, a few rounds.
#[test]
fn two_runs_started_at_once_on_one_folder_cannot_both_win() {
    let dir = Dir::new(LINES);
    let job = slow_job(&dir, 60);
    let job = job.to_str().unwrap();
    for round in 0..3 {
        let racers = [dir.command(&["run", job]), dir.command(&["run", job])].map(|mut run| {
            let run = run.stdout(Stdio::piped()).stderr(Stdio::piped());
            run.spawn().unwrap()
        });
        // The winner prints its job's id; the loser prints nothing and ends.
        let (mut winners, mut losers): (Vec<_>, Vec<_>) = racers
            .into_iter()
            .map(|mut racer| (first_line(&mut racer), racer))
            .partition(|(id, _)| !id.is_empty());
        assert_eq!((winners.len(), losers.len()), (1, 1), "round {round}");
        let (winner, mut winner_process) = winners.remove(0);
        let loser = losers.remove(0).1.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&loser.stderr);
        assert_eq!(loser.status.code(), Some(1), "round {round}: {stderr}");
        assert!(
            stderr.contains(&format!("also written by running job `{winner}`")),
            "round {round}: {stderr}"
        );
        winner_process.kill().unwrap();
        winner_process.wait().unwrap();
    }
}

/// The dry run compiles a module the cache lacks in memory only: a state folder whose cache
/// never held the upgraded counter is left byte for byte as it was, the cache included.
#[test]
fn check_with_a_module_never_compiled_leaves_the_cache_as_it_was() {
    let dir = Dir::cold(LINES);
    let job = slow_job(&dir, 1);
    let running = dir.start(&[job.to_str().unwrap()]);
    let savepoint = dir.save(&running.job);
    running.wait_ok();
    let upgraded = dir.write_job_in(
        &dir.path().join("v2"),
        &WordCount {
            counter: guest("counter_v2"),
            ..WordCount::default()
        },
    );
    let cache = dir.home().join("cache");
    assert!(
        !holds_module(&cache, &guest("counter_v2")),
        "compiled before"
    );
    let before = dir.snapshot_tree(&dir.home());
    let output = dir.host_ok(&["check", upgraded.to_str().unwrap(), "--from", &savepoint]);
    assert!(output.starts_with("ok:"), "{output}");
    assert!(
        !holds_module(&cache, &guest("counter_v2")),
        "check wrote it"
    );
    assert_same_tree(&before, &dir.snapshot_tree(&dir.home()), "check");
}

#[test]
fn a_run_refused_by_one_module_has_restored_no_sink_and_committed_nothing() {
    let dir = Dir::new(LINES);
    let hostile = |misbehave: &str| WordCount {
        hostile: Some(format!("config = {{ misbehave = \"{misbehave}\" }}")),
        lines_per_second: 1_000,
        ..WordCount::default()
    };
    let job = dir.write_job(&hostile("none"));
    let running = dir.start(&[job.to_str().unwrap()]);
    let savepoint = dir.save(&running.job);
    running.wait_ok();
    // Its state is there; the hostile operator now traps in `restore`, after the sinks' own
    // subtasks were built: the sinks must not have reconciled the folder with the point.
    let job = dir.write_job(&hostile("trap-in-restore"));
    dir.refused(
        &["run", job.to_str().unwrap(), "--from", &savepoint],
        &["operator `hostile`", "`restore` trapped"],
    );
    dir.refused(
        &["check", job.to_str().unwrap(), "--from", &savepoint],
        &["operator `hostile`", "`restore` trapped"],
    );
}

#[test]
fn a_changed_max_parallelism_is_refused_by_run_and_check() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 400);
    replace_in(
        &job,
        "name = \"wordcount\"",
        "name = \"wordcount\"\nmax_parallelism = 7",
    );
    for command in ["run", "check"] {
        dir.refused(
            &[command, job.to_str().unwrap(), "--from", &savepoint],
            &["max_parallelism = 128 key groups, the job sets 7"],
        );
    }
}

/// Rewrites the `_metadata` of `folder` through `change`, re-sealing it with a valid checksum:
/// a point that is intact as a file but wrong as a point.
fn rewrite_metadata(folder: &Path, change: impl FnOnce(&mut metadata::Metadata)) {
    let path = folder.join("_metadata");
    let mut decoded = metadata::decode(&std::fs::read(&path).unwrap()).unwrap();
    change(&mut decoded);
    std::fs::write(&path, metadata::encode(&decoded)).unwrap();
}

#[test]
fn a_point_without_the_state_of_one_subtask_is_refused_not_started_empty() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let (savepoint, folder) = dir.run_then_stop_with_savepoint(&job, 400);
    rewrite_metadata(&folder, |m| {
        let counter = m
            .operators
            .iter_mut()
            .find(|op| op.id.as_str() == "counter");
        counter.unwrap().files.retain(|f| f.subtask != 1);
    });
    for command in ["run", "check"] {
        dir.refused(
            &[command, job.to_str().unwrap(), "--from", &savepoint],
            &["operator `counter`: the savepoint has no state for subtask 1 of 2"],
        );
    }
}

#[test]
fn a_role_changed_under_the_same_id_is_refused() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 400);
    // The ids of the counter (an operator) and the sink swap: each module is of its world,
    // but each state would go to a module of the other.
    for (from, to) in [("sink", "swap"), ("counter", "sink"), ("swap", "counter")] {
        for key in ["id", "from", "to"] {
            let (from, to) = (format!("{key} = \"{from}\""), format!("{key} = \"{to}\""));
            let text = std::fs::read_to_string(&job).unwrap();
            std::fs::write(&job, text.replace(&from, &to)).unwrap();
        }
    }
    dir.refused(
        &["check", job.to_str().unwrap(), "--from", &savepoint],
        &[
            "operator `counter` has role `operator` in the savepoint and role `sink` in the job",
            "operator `sink` has role `sink` in the savepoint and role `operator` in the job",
        ],
    );
}

#[test]
fn resuming_a_job_whose_newest_point_is_unreadable_is_refused_naming_the_file() {
    let dir = Dir::new(LINES);
    let job = slow_job(&dir, 4);
    let running = dir.start(&[job.to_str().unwrap()]);
    wait_for_output_past(&dir, 4);
    let job_id = running.job.clone();
    running.kill();
    let checkpoints = dir.home().join("jobs").join(&job_id).join("checkpoints");
    let mut retained: Vec<u64> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().to_str()?.parse().ok())
        .collect();
    retained.sort();
    let (older, newest) = (retained[retained.len() - 2], retained[retained.len() - 1]);
    let metadata = checkpoints.join(newest.to_string()).join("_metadata");
    let mut bytes = std::fs::read(&metadata).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&metadata, bytes).unwrap();
    dir.refused(
        &["run", job.to_str().unwrap(), "--from", &job_id],
        &[
            &format!("the newest point of job `{job_id}` (checkpoint {newest}) is unreadable"),
            &metadata.display().to_string(),
            "checksum mismatch",
            &format!("--from {job_id}:N"),
        ],
    );
    // Named explicitly, the older point is taken, and the job resumes exactly.
    dir.start(&[
        job.to_str().unwrap(),
        "--from",
        &format!("{job_id}:{older}"),
    ])
    .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn checkpoints_in_progress_of_a_crashed_job_are_removed_when_a_job_starts_not_by_check() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let (ok, stderr) = dir
        .start(&[job.to_str().unwrap(), "--crash-at", "metadata-written:2"])
        .wait();
    assert!(!ok && stderr.contains("crash injected"), "{stderr}");
    let job_id = dir
        .host_ok(&["list"])
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let abandoned = dir
        .home()
        .join(format!("jobs/{job_id}/checkpoints/.in-progress-2"));
    assert!(
        abandoned.join("_metadata").exists(),
        "the crash left no checkpoint in progress"
    );

    let before = dir.snapshot_tree(dir.path());
    let output = dir.host_ok(&["check", job.to_str().unwrap(), "--from", &job_id]);
    assert!(output.starts_with("ok:"), "{output}");
    assert_same_tree(&before, &dir.snapshot_tree(dir.path()), "check");

    dir.start(&[job.to_str().unwrap(), "--from", &job_id])
        .wait_ok();
    assert!(
        !abandoned.exists(),
        "{} is still there",
        abandoned.display()
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn check_reports_what_happens_to_each_operator_and_json_says_whether_run_would_start() {
    let dir = Dir::new(LINES);
    let v1 = dir.write_job(&WordCount::default());
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&v1, 400);
    let v2 = dir.write_job(&WordCount {
        counter: crate::util::guest("counter_v2"),
        ..WordCount::default()
    });
    let report = dir.host_ok(&["check", v2.to_str().unwrap(), "--from", &savepoint]);
    assert!(
        report.contains("counter          migrated  word-counter 1.0.0 -> word-counter 2.0.0"),
        "{report}"
    );
    assert!(
        report.contains("tokenize         restored  tokenizer 1.0.0"),
        "{report}"
    );

    let json = dir.host_ok(&[
        "check",
        "--json",
        v2.to_str().unwrap(),
        "--from",
        &savepoint,
    ]);
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["would_start"], true);
    let status = |json: &serde_json::Value, id: &str| {
        let ops = json["operators"].as_array().unwrap();
        let op = ops.iter().find(|op| op["operator"] == id).unwrap();
        (
            op["status"].as_str().unwrap().to_owned(),
            op["errors"].clone(),
        )
    };
    assert_eq!(status(&json, "counter").0, "migrated");
    assert_eq!(status(&json, "sink").0, "restored");

    // v2's state read by v1: refused, quoting the module, and `--json` exits 1 as `run` would.
    let running = dir.start(&[v2.to_str().unwrap(), "--from", &savepoint]);
    let v2_point = dir.save_and_stop(running);
    let v1 = dir.write_job(&WordCount::default());
    let output = dir.host(&["check", "--json", v1.to_str().unwrap(), "--from", &v2_point]);
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["would_start"], false);
    let (counter, errors) = status(&json, "counter");
    assert_eq!(counter, "refused");
    assert!(
        errors
            .to_string()
            .contains("version 2 is not one this module reads"),
        "{errors}"
    );
    assert_eq!(status(&json, "tokenize").0, "restored");
}
