//! `host run --detach`, `host logs [--follow]`, and `host completions`.

use std::process::Stdio;

use crate::util::{Dir, WordCount};

#[test]
fn a_detached_job_prints_its_id_and_logs_follow_ends_when_it_stops() {
    let dir = Dir::new(30_000);
    let job_file = dir.write_job(&WordCount::default());
    let started = dir.host(&["run", "--detach", job_file.to_str().unwrap()]);
    assert_eq!(started.status.code(), Some(0), "{started:?}");
    let stdout = String::from_utf8(started.stdout).unwrap();
    let job = stdout.trim_end().to_owned();
    assert!(
        job.starts_with("job-") && stdout == format!("{job}\n"),
        "{stdout:?}"
    );

    let follow = dir
        .command(&["logs", "--follow", &job])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        dir.host_ok(&["list"])
            .contains(&format!("{job}\twordcount\trunning"))
    );
    assert_eq!(dir.host_ok(&["stop", &job]), format!("stopped {job}\n"));
    let followed = follow.wait_with_output().unwrap();
    assert_eq!(followed.status.code(), Some(0), "{followed:?}");
    // The job's whole output: its id, and no warning (the tests log warnings only).
    assert_eq!(
        String::from_utf8(followed.stdout).unwrap(),
        format!("{job}\n")
    );
    assert_eq!(dir.host_ok(&["logs", &job]), format!("{job}\n"));
    assert!(
        dir.host_ok(&["list"])
            .contains(&format!("{job}\twordcount\tstopped"))
    );

    let missing = dir.host(&["logs", "job-nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no job `job-nope`"));
}

#[test]
fn a_detached_job_that_is_refused_says_why_and_fails() {
    let dir = Dir::new(10);
    let refused = dir.host(&["run", "--detach", "no-such-job.toml"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(refused.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot read job file no-such-job.toml"),
        "{stderr}"
    );
}

#[test]
fn completions_are_printed_for_each_shell() {
    let dir = Dir::new(1);
    for (shell, needle) in [
        ("bash", "complete -F"),
        ("zsh", "#compdef host"),
        ("fish", "complete -c host"),
    ] {
        let script = dir.host_ok(&["completions", shell]);
        assert!(
            script.contains(needle) && script.contains("savepoints"),
            "{shell}"
        );
    }
}
