//! Guarantee 3: `kill -9` of the host, then `run --from JOB_ID`, loses and repeats nothing.
//! Each phase where an injected crash can strike is pinned in [`phases`].

use std::time::Duration;

use crate::util::{Dir, WordCount, assert_exactly_once, input_text};

mod phases;

const LINES: usize = 3_000;

#[test]
fn kill_9_then_resume_from_the_job_id_loses_and_repeats_nothing() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        checkpoint_interval_ms: 100,
        ..WordCount::default()
    });
    let mut from: Option<String> = None;
    // Kill the host three times at different moments, resuming each time from the job killed.
    for delay_ms in [700, 450, 900] {
        let mut args = vec![job.to_str().unwrap().to_owned()];
        if let Some(previous) = &from {
            args.extend(["--from".to_owned(), previous.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let running = dir.start(&args);
        std::thread::sleep(Duration::from_millis(delay_ms));
        from = Some(running.job.clone());
        running.kill();
    }
    let listed = dir.host_ok(&["list"]);
    assert!(listed.contains("crashed"), "{listed}");
    dir.start(&[job.to_str().unwrap(), "--from", from.as_deref().unwrap()])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn a_full_disk_fails_that_savepoint_only_and_older_ones_stay_intact() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let running = dir.start(&[
        job.to_str().unwrap(),
        "--checkpoint-interval",
        "0",
        "--fail-write-at",
        "state-write:2",
    ]);
    let first = dir.save(&running.job);
    let refusal = dir.host_err(&["save", &running.job]);
    assert!(
        refusal.contains("savepoint 2 failed") && refusal.contains("No space left on device"),
        "{refusal}"
    );
    let third = dir.save(&running.job);
    running.wait_ok();

    assert!(
        dir.host_ok(&["inspect", &first])
            .contains("all checksums verified")
    );
    assert!(
        third.contains("-3-"),
        "the failed savepoint's number is not reused: {third}"
    );
    let checkpoints = dir
        .home()
        .join("jobs")
        .join(
            third
                .trim_start_matches("sp-")
                .rsplitn(3, '-')
                .nth(2)
                .unwrap(),
        )
        .join("checkpoints");
    let leftovers: Vec<_> = std::fs::read_dir(&checkpoints)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !leftovers
            .iter()
            .any(|n| n.to_string_lossy().contains("in-progress-2")),
        "{leftovers:?}"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}
