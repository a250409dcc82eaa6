//! Guarantees 1, 2 and 4: a savepoint taken while the job runs resumes, with upgraded modules,
//! to exactly the output of an uninterrupted run; savepoints outlive the job and retention.

use crate::util::{
    Dir, WordCount, assert_exactly_once, assert_v1_then_v2, copy_folder, guest, input_text,
    wait_until,
};

const LINES: usize = 3_000;

#[test]
fn an_uninterrupted_run_counts_every_word_once() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        lines_per_second: 1_000_000,
        ..WordCount::default()
    });
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn save_stop_upgrade_and_resume_gives_the_uninterrupted_output() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let running = dir.start(&[job.to_str().unwrap()]);
    // Mid-stream: once a checkpoint has committed output.
    wait_until("committed output", || !dir.committed_output().is_empty());
    let saved = dir.host_ok(&["save", &running.job]);
    let savepoint = saved.lines().next().unwrap().to_owned();
    assert!(savepoint.starts_with("sp-"), "{saved}");
    assert!(
        dir.home()
            .join("savepoints")
            .join(&savepoint)
            .join("_metadata")
            .exists()
    );
    dir.host_ok(&["stop", &running.job]);
    let (_, stderr) = running.wait();
    let committed_before = dir.committed_output().len();
    assert!(
        committed_before > 0,
        "nothing was committed before the save:\n{stderr}"
    );

    // Upgrade the counter to v2, which migrates v1 state, and resume.
    let job = dir.write_job(&WordCount {
        counter: guest("counter_v2"),
        ..WordCount::default()
    });
    dir.start(&[job.to_str().unwrap(), "--from", &savepoint])
        .wait_ok();

    let output = dir.committed_output();
    assert_exactly_once(&output, &input_text(LINES));
    assert_v1_then_v2(&output);
}

#[test]
fn a_savepoint_outlives_its_job_and_retention() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        checkpoint_interval_ms: 50,
        checkpoints_retained: 2,
        ..WordCount::default()
    });
    let running = dir.start(&[job.to_str().unwrap()]);
    wait_until("committed output", || !dir.committed_output().is_empty());
    let savepoint = dir.save(&running.job);
    running.wait_ok();

    // The job ended, took many more checkpoints than it retains, and the savepoint is intact.
    let checkpoints = std::fs::read_dir(dir.home().join("jobs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .join("checkpoints");
    let retained = std::fs::read_dir(&checkpoints)
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    assert!(
        retained <= 2,
        "{retained} checkpoints retained, 2 expected at most"
    );
    let inspected = dir.host_ok(&["inspect", &savepoint]);
    assert!(
        inspected.contains("all checksums verified") && inspected.contains("counter-1.state"),
        "{inspected}"
    );
    assert!(dir.host_ok(&["savepoints"]).contains(&savepoint));

    // A restart of the host changes nothing either; only `host rm` removes it.
    assert!(dir.host_ok(&["list"]).contains("finished"));
    dir.host_ok(&["rm", &savepoint]);
    assert!(!dir.host_ok(&["savepoints"]).contains(&savepoint));
    assert!(
        dir.host_err(&["inspect", &savepoint])
            .contains("no savepoint, job or folder")
    );
}

#[test]
fn a_savepoint_folder_is_relocatable() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let (_, folder) = dir.run_then_stop_with_savepoint(&job, 600);

    // Copy the savepoint folder elsewhere, wipe the state folder, resume from the copy.
    let moved = dir.path().join("moved-savepoint");
    copy_folder(&folder, &moved);
    std::fs::remove_dir_all(dir.home()).unwrap();
    dir.start(&[job.to_str().unwrap(), "--from", moved.to_str().unwrap()])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}
