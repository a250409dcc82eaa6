//! Guarantee 6, the grants: a guest that tries to reach outside its mounts (`..`, symlinks),
//! to change a read-only mount or to use the network is refused inside the sandbox. Each test
//! makes the real attempt from the `hostile` guest, which reports every denial in the job's
//! failure, and then checks the fact on the host side: the secret beside the mount is nowhere
//! in the log or the files the job wrote, the read-only folder is unchanged, the listening
//! sockets received nothing.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::util::{Dir, WordCount};

const LINES: usize = 200;

/// `host run`'s exit code when the job fails while running.
const FAILED_WHILE_RUNNING: i32 = 3;

/// The content of the secret file beside the granted folder.
const SECRET: &str = "canary-5e3f1b-the-guest-must-never-see-this";

/// The read-only grant of the escape tests.
const GRANTED: &str = r#"{ host = "granted", guest = "/granted" }"#;

/// A scratch folder with `granted/` (granted read-only at `/granted`, holding `a.txt` and an
/// empty folder `empty/`) and, beside it, outside every grant, `secret.txt`.
fn granted_dir() -> Dir {
    let dir = Dir::new(LINES);
    let granted = dir.path().join("granted");
    std::fs::create_dir_all(granted.join("empty")).unwrap();
    std::fs::write(granted.join("a.txt"), "granted file\n").unwrap();
    std::fs::write(dir.path().join("secret.txt"), SECRET).unwrap();
    dir
}

/// Runs a word count whose `hostile` operator is configured by `config` (the inside of an
/// inline table), with `/granted` read-only and `/scratch` writable; returns its exit code and
/// stderr.
fn run_escape(dir: &Dir, config: &str) -> (Option<i32>, String) {
    let job = dir.write_job(&WordCount {
        hostile: Some(format!("config = {{ {config} }}")),
        hostile_mounts: GRANTED.to_owned(),
        ..WordCount::default()
    });
    dir.start(&[job.to_str().unwrap()]).wait_code()
}

/// Asserts that the job failed while running, with the guest reporting that each of
/// `attempts` was denied and none escaped.
fn assert_denied(outcome: &(Option<i32>, String), attempts: &[&str]) {
    let (code, stderr) = outcome;
    assert_eq!(
        *code,
        Some(FAILED_WHILE_RUNNING),
        "the job should have failed while running:\n{stderr}"
    );
    assert!(
        !stderr.contains("hostile: escaped"),
        "the guest escaped:\n{stderr}"
    );
    assert!(
        stderr.contains("hostile[") && stderr.contains("`process` refused: hostile: denied "),
        "the guest did not report its denials:\n{stderr}"
    );
    for attempt in attempts {
        assert!(
            stderr.contains(&format!("{attempt}: ")),
            "`{attempt}` not reported denied:\n{stderr}"
        );
    }
}

/// Asserts that the secret is in no file under the scratch folder but its own, and not in
/// `stderr`.
fn assert_secret_kept(dir: &Dir, stderr: &str) {
    assert!(!stderr.contains(SECRET), "the secret reached the log");
    let own = dir.path().join("secret.txt");
    for (path, entry) in tree(dir.path()) {
        if let Entry::File(bytes, _) = entry {
            assert!(
                path == own || !String::from_utf8_lossy(&bytes).contains(SECRET),
                "the secret was copied into {}",
                path.display()
            );
        }
    }
}

/// What a folder entry is, to compare a tree before and after.
#[derive(Debug, PartialEq)]
enum Entry {
    File(Vec<u8>, SystemTime),
    Dir(SystemTime),
    Link(PathBuf),
}

/// Every entry under `root` (symlinks not followed), with its bytes and modification time.
fn tree(root: &Path) -> BTreeMap<PathBuf, Entry> {
    let mut entries = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            let entry = if meta.is_symlink() {
                Entry::Link(std::fs::read_link(&path).unwrap())
            } else if meta.is_dir() {
                stack.push(path.clone());
                Entry::Dir(meta.modified().unwrap())
            } else {
                // A socket or the like reads as nothing.
                let bytes = std::fs::read(&path).unwrap_or_default();
                Entry::File(bytes, meta.modified().unwrap())
            };
            entries.insert(path, entry);
        }
    }
    entries
}

#[test]
fn a_guest_cannot_read_beside_its_mount_through_dot_dot() {
    let dir = granted_dir();
    let outcome = run_escape(
        &dir,
        "misbehave = \"read-outside\", control = \"/granted/a.txt\", \
         paths = \"/granted/../secret.txt;/granted/empty/../../secret.txt;/granted/..;/secret.txt\", \
         dirs = \"/granted/..;/granted/empty/../..;/\"",
    );
    assert_denied(
        &outcome,
        &[
            "read /granted/../secret.txt",
            "stat /granted/../secret.txt",
            "read /granted/empty/../../secret.txt",
            "stat /granted/empty/../../secret.txt",
            "stat /granted/..",
            "read /secret.txt",
            "list /granted/..",
            "list /granted/empty/../..",
            "list /",
        ],
    );
    // The grant itself worked: the guest read inside it first.
    assert!(
        outcome.1.contains("allowed: read /granted/a.txt"),
        "{}",
        outcome.1
    );
    assert_secret_kept(&dir, &outcome.1);
}

#[test]
fn a_guest_cannot_follow_a_symlink_out_of_its_mount() {
    let dir = granted_dir();
    let granted = dir.path().join("granted");
    let secret = dir.path().join("secret.txt");
    std::os::unix::fs::symlink(&secret, granted.join("absolute-link")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", granted.join("relative-link")).unwrap();
    std::os::unix::fs::symlink("..", granted.join("folder-link")).unwrap();
    // A link that stays inside the grant is followed: the denials are about leaving it.
    std::os::unix::fs::symlink("a.txt", granted.join("inside-link")).unwrap();
    let before = tree(&granted);
    let outcome = run_escape(
        &dir,
        &format!(
            "misbehave = \"read-outside\", control = \"/granted/inside-link\", \
             paths = \"/granted/absolute-link;/granted/relative-link;/granted/folder-link/secret.txt\", \
             dirs = \"/granted/folder-link\", \
             link_dir = \"/scratch\", link_targets = \"../secret.txt;{}\"",
            secret.display()
        ),
    );
    assert_denied(
        &outcome,
        &[
            "read /granted/absolute-link",
            "stat /granted/absolute-link",
            "read /granted/relative-link",
            "stat /granted/relative-link",
            "read /granted/folder-link/secret.txt",
            "list /granted/folder-link",
            // Links the guest made itself in its writable grant.
            "read /scratch/hostile-link-0 -> ../secret.txt",
            &format!("read /scratch/hostile-link-1 -> {}", secret.display()),
        ],
    );
    assert!(
        outcome.1.contains("allowed: read /granted/inside-link"),
        "{}",
        outcome.1
    );
    // The relative link the guest made is there, so following it was tried (and refused).
    assert_eq!(
        std::fs::read_link(dir.path().join("scratch/hostile-link-0")).ok(),
        Some(PathBuf::from("../secret.txt")),
        "{}",
        outcome.1
    );
    assert_secret_kept(&dir, &outcome.1);
    assert_eq!(before, tree(&granted), "the read-only folder changed");
}

#[test]
fn a_guest_cannot_change_a_read_only_mount() {
    let dir = granted_dir();
    let granted = dir.path().join("granted");
    let before = tree(&granted);
    let outcome = run_escape(
        &dir,
        "misbehave = \"write-read-only\", dir = \"/granted\", file = \"a.txt\", \
         subdir = \"empty\", writable_dir = \"/scratch\"",
    );
    assert_denied(
        &outcome,
        &[
            "create /granted/hostile-new.txt",
            "create-new /granted/hostile-new.txt",
            "write /granted/a.txt",
            "append to /granted/a.txt",
            "truncate /granted/a.txt",
            "set_len /granted/a.txt",
            "retime /granted/a.txt",
            "rename /granted/a.txt in place",
            "move /granted/a.txt to /scratch",
            "hard-link /granted/a.txt into /scratch",
            "move /scratch/hostile-inbound.txt into /granted",
            "remove /granted/a.txt",
            "create folder /granted/hostile-dir",
            "remove folder /granted/empty",
            "symlink /granted/hostile-symlink",
        ],
    );
    // Byte for byte, time for time, entry for entry: unchanged.
    assert_eq!(before, tree(&granted), "the read-only folder changed");
    // Nothing of it reached the writable grant either…
    let scratch = dir.path().join("scratch");
    for name in ["hostile-moved.txt", "hostile-hard-link.txt"] {
        assert!(
            std::fs::symlink_metadata(scratch.join(name)).is_err(),
            "{name} exists in the writable grant"
        );
    }
    // …which the guest could write to, so the denials were about the read-only grant.
    assert_eq!(
        std::fs::read(scratch.join("hostile-control.txt")).unwrap(),
        b"hostile"
    );
    assert_eq!(
        std::fs::read(scratch.join("hostile-inbound.txt")).unwrap(),
        b"hostile"
    );
}

#[test]
fn a_guest_cannot_reach_the_network() {
    let dir = granted_dir();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let outcome = run_escape(
        &dir,
        &format!(
            "misbehave = \"network\", port = \"{}\", udp_port = \"{}\"",
            tcp.local_addr().unwrap().port(),
            udp.local_addr().unwrap().port()
        ),
    );
    let (tcp_port, udp_port) = (
        tcp.local_addr().unwrap().port(),
        udp.local_addr().unwrap().port(),
    );
    assert_denied(
        &outcome,
        &[
            &format!("tcp connect 127.0.0.1:{tcp_port}"),
            &format!("udp send to 127.0.0.1:{udp_port}"),
            "tcp listen on 127.0.0.1:0",
            "look up localhost",
        ],
    );
    // Refused by the host (WASI `access-denied`, and the resolver's permanent failure), not
    // merely unsupported by the guest's standard library.
    let stderr = &outcome.1;
    for attempt in [
        format!("tcp connect 127.0.0.1:{tcp_port}: Permission denied"),
        format!("udp send to 127.0.0.1:{udp_port}: Permission denied"),
        "tcp listen on 127.0.0.1:0: Permission denied".to_owned(),
        "look up localhost: failed to lookup address information: Non-recoverable".to_owned(),
    ] {
        assert!(
            stderr.contains(&attempt),
            "expected `{attempt}` in:\n{stderr}"
        );
    }
    // A connection or a datagram would be waiting now that the job has ended.
    tcp.set_nonblocking(true).unwrap();
    match tcp.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the listener was reached: {other:?}"),
    }
    udp.set_nonblocking(true).unwrap();
    let mut buf = [0; 64];
    match udp.recv_from(&mut buf) {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the UDP socket was reached: {other:?}"),
    }
}
