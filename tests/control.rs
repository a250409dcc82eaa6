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
