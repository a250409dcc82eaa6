//! Two state folders on one prefix of the bucket, as two machines sharing the store: a job
//! resumed on the other machine takes the first one's over, and the generation fence keeps the
//! job taken over from publishing or committing anything after (stalled at every step of a
//! publish); a point planted on the shared prefix is passed over; `rm` and `gc` on one machine
//! leave what a job running on the other needs.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use super::server::BUCKET;
use super::{LINES, S3Server, listed_checkpoints};
use crate::util::{Dir, WordCount, assert_exactly_once, input_text, wait_until};

#[test]
fn a_process_whose_job_was_taken_over_cannot_publish() {
    let server = S3Server::start();
    let (first, second) = two_machines(&server, "fenced");
    // Job A takes no checkpoint of its own accord: its next publish is its final checkpoint,
    // about 6 s after it starts, well after B has built its job and taken A over.
    let job_a = first.write_job(&WordCount {
        lines_per_second: 500,
        ..WordCount::default()
    });
    let a = first.start(&[job_a.to_str().unwrap(), "--checkpoint-interval", "0"]);
    std::thread::sleep(Duration::from_millis(500));
    let savepoint = first.save(&a.job);
    committed(&first.path().join("output"), 1);

    // Another state folder, as on another machine, resumes job A while it still runs. Its sink
    // gets a copy of A's output folder as it is now (as a shared folder would be seen), so
    // that it can reconcile it with the savepoint; B takes A over before choosing its point.
    let b = resume_elsewhere(&first, &second, &a.job);
    let (code, stderr) = a.wait_code();
    assert_eq!(code, Some(3), "A must fail:\n{stderr}");
    assert!(
        stderr.contains("generation fence") && stderr.contains("was taken over"),
        "{stderr}"
    );
    b.wait_ok();
    // A published nothing after the savepoint B resumed from (its checkpoint 1).
    let a_points = listed_checkpoints(&second, &a_job(&first));
    assert_eq!(a_points, [1], "points of A after {savepoint}");
    assert_exactly_once(&second.committed_output(), &input_text(LINES));
}

/// The review's reproduction: A (restarts allowed) is paused; B, on another state folder and
/// the same store and sink folder, resumes A's job and commits all of it; A wakes, is fenced,
/// and must end without restarting: a restart would run its sink's `recover` again and delete
/// every part file B committed after A's checkpoint.
#[test]
fn a_fenced_job_ends_without_touching_what_its_successor_committed() {
    let server = S3Server::start();
    let (first, second) = two_machines(&server, "fenced-restart");
    // One job file, so one input and one output folder: the shared sink folder.
    let job = first.write_job(&WordCount {
        lines_per_second: 500,
        restart_attempts: 3,
        ..WordCount::default()
    });
    let job = job.to_str().unwrap();
    let a = first.start(&[job]);
    wait_until("A's first checkpoint", || {
        !first.committed_output().is_empty()
    });
    signal(&a.child, "-STOP");
    let b = second.start(&[job, "--from", &a.job]);
    b.wait_ok();
    let committed_by_b = part_files(&first.path().join("output"));
    assert_exactly_once(&first.committed_output(), &input_text(LINES));
    assert!(
        committed_by_b
            .iter()
            .any(|name| name.contains("-1000000000")),
        "B numbers its checkpoints in an epoch of its own: {committed_by_b:?}"
    );

    signal(&a.child, "-CONT");
    let (code, stderr) = a.wait_code();
    assert_eq!(code, Some(3), "A must fail:\n{stderr}");
    assert!(stderr.contains("generation fence"), "{stderr}");
    assert!(
        !stderr.contains("restarting"),
        "a fenced job restarted:\n{stderr}"
    );
    assert_eq!(part_files(&first.path().join("output")), committed_by_b);
    assert_exactly_once(&first.committed_output(), &input_text(LINES));
}

/// The review's race: A is past its fence check for checkpoint 2, its states written, about
/// to put `_metadata` (stalled there); B takes A over and removes checkpoint 2's states as
/// never published. A's put must then fail: no interleaving publishes a point whose states are
/// gone, and every point of A listed afterwards reads back whole.
#[test]
fn a_takeover_during_a_publish_never_lets_a_point_without_its_states_appear() {
    let server = S3Server::start();
    let prefix = "race";
    let (first, second) = two_machines(&server, prefix);
    let job = first.write_job(&WordCount {
        lines_per_second: 200,
        checkpoint_interval_ms: 500,
        ..WordCount::default()
    });
    let stall = "metadata-written:6000";
    let a = first.start(&[job.to_str().unwrap(), "--stall-at", stall]);
    let second_states = format!("{prefix}/jobs/{}/checkpoints/2/", a.job);
    // 7 subtasks, 7 state files: every one acked, the publish stalled right before its put.
    wait_until(
        "A's checkpoint 2 stalled before its `_metadata` put",
        || {
            let keys = server.keys(&second_states);
            keys.iter().filter(|k| k.ends_with(".state")).count() == 7
                && !keys.iter().any(|k| k.ends_with("_metadata"))
        },
    );
    assert_eq!(listed_checkpoints(&first, &a.job), [1]);

    let b = resume_elsewhere(&first, &second, &a.job);
    let (code, stderr) = a.wait_code();
    assert_eq!(code, Some(3), "A must fail:\n{stderr}");
    assert!(stderr.contains("generation fence"), "{stderr}");
    b.wait_ok();
    assert_eq!(listed_checkpoints(&second, &a_job(&first)), [1]);
    assert_eq!(
        server.keys(&second_states),
        [format!("{second_states}_metadata")]
    );
    assert_exactly_once(&second.committed_output(), &input_text(LINES));
}

/// Issue 30, item 9b: anyone who can write a shared prefix can put a `_metadata` there. A copy
/// of a job's newest point, planted under a higher number with a forged generation, is passed
/// over by `--from JOB` with a warning naming it, and left there; the job's own points are
/// taken, though they are numbered in the epoch after the point it took over.
#[test]
fn a_point_planted_on_the_shared_prefix_is_passed_over_by_job_id_and_left_there() {
    let server = S3Server::start();
    let prefix = "planted";
    let (first, second) = two_machines(&server, prefix);
    let job = first.write_job(&WordCount::default());
    let a = first.start(&[job.to_str().unwrap()]);
    let a_id = a.job.clone();
    a.wait_ok();
    // B, elsewhere, resumes A's job (taking it over): its checkpoints are in the next epoch.
    // Its sink gets A's output, as a shared folder would be seen.
    copy_tree(&first.path().join("output"), &second.path().join("output"));
    let job_b = second.write_job(&WordCount::default());
    let job_b = job_b.to_str().unwrap();
    let b = second.start(&[job_b, "--from", &a_id]);
    let b_id = b.job.clone();
    b.wait_ok();
    let newest = *listed_checkpoints(&second, &b_id).last().unwrap();
    assert!(newest > 1_000_000_000_000, "B's own epoch: {newest}");
    let real = format!("s3://{BUCKET}/{prefix}/jobs/{b_id}/checkpoints/{newest}");
    let chosen = |stdout: &str| stdout.contains(&format!("from {real}:"));
    let checked = second.host_ok(&["check", job_b, "--from", &b_id]);
    assert!(chosen(&checked), "{checked}");

    let planted_number = 7_000_000_000_000 + newest % 1_000_000_000_000;
    let from = format!("{prefix}/jobs/{b_id}/checkpoints/{newest}/");
    let to = format!("{prefix}/jobs/{b_id}/checkpoints/{planted_number}/");
    for key in server.keys(&from) {
        let bytes = server.object(&key);
        let bytes = match key.ends_with("/_metadata") {
            false => bytes,
            true => {
                let mut forged = host::store::metadata::decode(&bytes).unwrap();
                assert_eq!(forged.generation, Some(2), "B's lease starts at epoch 1's");
                forged.checkpoint = host::ids::CheckpointId(planted_number);
                forged.generation = Some(8);
                host::store::metadata::encode(&forged)
            }
        };
        server.plant(&key.replacen(&from, &to, 1), &bytes);
    }
    let output = second
        .command(&["check", job_b, "--from", &b_id])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success() && chosen(&stdout),
        "{stdout}\n{stderr}"
    );
    let planted = format!("s3://{BUCKET}/{to}");
    let planted = planted.trim_end_matches('/');
    assert!(
        stderr.contains(&format!("passing over {planted}: ")),
        "{stderr}"
    );
    assert!(
        server.keys(&to).iter().any(|k| k.ends_with("/_metadata")),
        "left there"
    );
}

/// `rm` and `gc` from another state folder on the same store know the jobs running on other
/// machines by their leases: a retained checkpoint of one is not removed, nor the modules of a
/// job that has written no point yet; once the jobs end, both go ahead.
#[test]
fn rm_and_gc_elsewhere_leave_what_a_job_running_on_another_machine_needs() {
    let server = S3Server::start();
    let (here, elsewhere) = two_machines(&server, "shared");
    // Every checkpoint retained, so that the one `rm` names stays until it is removed.
    let slow = WordCount {
        lines_per_second: 300,
        checkpoints_retained: 1_000,
        ..WordCount::default()
    };
    let checkpointing = here.write_job(&slow);
    let a = here.start(&[checkpointing.to_str().unwrap()]);
    wait_until("a retained checkpoint of A", || {
        !listed_checkpoints(&elsewhere, &a.job).is_empty()
    });
    let retained = listed_checkpoints(&elsewhere, &a.job)[0];
    let point = format!("{}:{retained}", a.job);
    let refused = elsewhere.refused(&["rm", &point], &["runs elsewhere", "lease"]);
    assert!(refused.contains(&a.job), "{refused}");

    // A job with no checkpoint yet: only its lease names its modules.
    let components = here.path().join("b");
    let job_b = here.write_job_in(
        &components,
        &WordCount {
            counter: crate::util::guest("counter_v2"),
            checkpoint_interval_ms: 0,
            ..slow
        },
    );
    let b = here.start(&[job_b.to_str().unwrap(), "--checkpoint-interval", "0"]);
    let counter_v2 = crate::upgrade::sha256_of(&crate::util::guest("counter_v2"));
    let module = format!("shared/modules/{counter_v2}.wasm");
    assert!(server.keys("shared/modules/").contains(&module));
    elsewhere.host_ok(&["gc"]);
    assert!(
        server.keys("shared/modules/").contains(&module),
        "gc elsewhere removed the module of a job running here"
    );

    let a_job = a.job.clone();
    a.wait_ok();
    b.wait_ok();
    elsewhere.host_ok(&["rm", &point]);
    assert!(!listed_checkpoints(&elsewhere, &a_job).contains(&retained));
}

/// The fence's second check, right after the `_metadata` put: A is stalled between its put of
/// checkpoint 1 and that check while B takes it over. A must not commit checkpoint 1 (B, which
/// resumes from it, recovers it): it fails fenced at checkpoint 1, not at its next one.
#[test]
fn a_takeover_between_the_put_and_the_second_check_fences_that_very_checkpoint() {
    let server = S3Server::start();
    let prefix = "second-check";
    let (first, second) = two_machines(&server, prefix);
    let job = first.write_job(&WordCount {
        lines_per_second: 200,
        checkpoint_interval_ms: 500,
        ..WordCount::default()
    });
    let a = first.start(&[job.to_str().unwrap(), "--stall-at", "metadata-put:6000"]);
    let published = format!("{prefix}/jobs/{}/checkpoints/1/_metadata", a.job);
    wait_until("A's checkpoint 1 put, the second check stalled", || {
        server.keys(&published).contains(&published)
    });
    let b = resume_elsewhere(&first, &second, &a.job);
    let (code, stderr) = a.wait_code();
    assert_eq!(code, Some(3), "A must fail:\n{stderr}");
    assert!(
        stderr.contains("refusing to publish or commit checkpoint 1 (generation fence)"),
        "A was fenced elsewhere than at the checkpoint it put during the takeover:\n{stderr}"
    );
    b.wait_ok();
    assert_exactly_once(&second.committed_output(), &input_text(LINES));
}

/// Sends `signal` (`-STOP`, `-CONT`) to `child`.
fn signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill {signal} failed");
}

/// The names of the part files in `output`, sorted.
fn part_files(output: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(output)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("part-"))
        .collect();
    names.sort();
    names
}

/// Two state folders on one prefix of `server`'s bucket, as on two machines.
fn two_machines(server: &S3Server, prefix: &str) -> (Dir, Dir) {
    let env = server.env(prefix);
    (
        Dir::new(LINES).with_env(&env),
        Dir::new(LINES).with_env(&env),
    )
}

/// Resumes job `job` of state folder `first` from `second`, as another machine would, while
/// it still runs. Its sink gets a copy of `first`'s output folder as it is now (as a shared
/// folder would be seen), so that it can reconcile it with the point.
fn resume_elsewhere(first: &Dir, second: &Dir, job: &str) -> crate::util::RunningJob {
    copy_tree(&first.path().join("output"), &second.path().join("output"));
    let job_b = second.write_job(&WordCount::default());
    second.start(&[job_b.to_str().unwrap(), "--from", job])
}

/// Waits until the file sink writing into `output` has published its files of `checkpoint`
/// (A commits them just after `save` returns): a copy taken while it renames them could find
/// a file neither staged nor published.
fn committed(output: &Path, checkpoint: u64) {
    let staged = format!("-{checkpoint}.pending");
    wait_until("the savepoint's output published", || {
        let names = std::fs::read_dir(output.join(".staging"))
            .into_iter()
            .flatten();
        let mut names = names.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        !names.any(|name| name.ends_with(&staged))
    });
}

/// The job id of the only job run in `dir`.
fn a_job(dir: &Dir) -> String {
    let listed = dir.host_ok(&["list"]);
    listed.split_whitespace().next().unwrap().to_owned()
}

/// Copies the folder `from` into `to`, sub-folders included.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()));
        } else {
            // A file A is still writing may be caught half-way; B's sink discards it.
            let _ = std::fs::copy(&path, to.join(entry.file_name()));
        }
    }
}
