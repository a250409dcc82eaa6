//! The control plane: the socket is owner-only inside an owner-only state folder, and a
//! malformed or oversized request gets an error reply without disturbing the job.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use crate::util::{Dir, WordCount, assert_exactly_once, input_text};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn ask(socket: &std::path::Path, request: &[u8]) -> String {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The server may stop reading at its limit; what it did not read does not matter.
    let _ = stream.write_all(request);
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer).unwrap();
    answer
}

#[test]
fn bad_requests_get_an_error_reply_and_the_job_runs_on() {
    let dir = Dir::new(3_000);
    let job = dir.write_job(&WordCount::default());
    let running = dir.start(&[job.to_str().unwrap()]);
    let socket = dir
        .home()
        .join("jobs")
        .join(&running.job)
        .join("control.sock");
    assert_eq!(mode(&socket), 0o600, "control socket");
    assert_eq!(mode(&dir.home()), 0o700, "state folder");
    assert_eq!(
        mode(&dir.home().join("jobs").join(&running.job)),
        0o700,
        "job folder"
    );

    let answer = ask(&socket, b"{\"request\": \"format-disk\"}\n");
    assert!(answer.contains("malformed request"), "{answer}");
    let answer = ask(&socket, b"not json at all\n");
    assert!(answer.contains("malformed request"), "{answer}");
    let answer = ask(&socket, &vec![b'x'; 100 * 1024]);
    assert!(answer.contains("malformed request"), "{answer}");

    // The job still answers, and its output is still exact.
    let saved = dir.host_ok(&["save", &running.job]);
    assert!(saved.starts_with("sp-"), "{saved}");
    running.wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(3_000));
}

/// `host stop` returns only once the job's process let go of it: a script that stops a job and
/// at once resumes it from its savepoint is never refused. The stopped process lingers 1.5 s
/// after its job ended (`--stall-at ended`), as a slow exit would.
#[test]
fn stop_returns_only_once_the_job_is_let_go_so_that_a_resume_right_after_starts() {
    let dir = Dir::new(3_000);
    let job = dir.write_job(&WordCount {
        lines_per_second: 500,
        ..WordCount::default()
    });
    let job = job.to_str().unwrap();
    let first = dir.start(&[job, "--stall-at", "ended:1500"]);
    let saved = dir.host_ok(&["save", &first.job]);
    let savepoint = saved.lines().next().expect("savepoint id").to_owned();
    // Without a savepoint: a resume from the one taken before.
    dir.host_ok(&["stop", &first.job]);
    let second = dir.start(&[job, "--from", &savepoint, "--stall-at", "ended:1500"]);
    // With one: a resume from the savepoint the stop wrote.
    let stopped = dir.host_ok(&["stop", "--save", &second.job]);
    let last = stopped.lines().next().expect("savepoint id").to_owned();
    let third = dir.start(&[job, "--from", &last]);
    for running in [first, second] {
        let (code, stderr) = running.wait_code();
        assert_eq!(code, Some(0), "{stderr}");
    }
    third.wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(3_000));
}
