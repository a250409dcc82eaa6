//! Checkpoints and savepoints on an S3-compatible object store (`--store s3://…`), against a
//! real server: moto's `moto_server` (pinned, installed by `tests/s3/install-moto.sh` into
//! `<target-dir>/venv-moto`), started on a free port of 127.0.0.1 for each test and stopped
//! when the test ends, passing or not. No part of the S3 API is mocked.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::util::{
    Dir, WordCount, assert_exactly_once, first_line, input_text, target_dir, wait_until,
};

const LINES: usize = 3_000;
/// Longest the S3 server may take to accept connections.
const SERVER_START_MAX: Duration = Duration::from_secs(60);
const BUCKET: &str = "points";
/// An `Authorization` header of the shape S3 wants, which moto takes without checking it.
const ANY_SIGNATURE: &str = "AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/s3/aws4_request, \
                             SignedHeaders=host, Signature=0";

/// Installs moto once per test process (the script itself skips an installed venv).
fn moto_venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(|| {
        let venv = target_dir().join("venv-moto");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/s3/install-moto.sh");
        let status = Command::new("bash")
            .arg(&script)
            .arg(&venv)
            .status()
            .expect("running install-moto.sh");
        assert!(status.success(), "{} failed", script.display());
        venv
    })
}

/// A `moto_server` on 127.0.0.1 with one bucket; killed when dropped.
pub(crate) struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    /// Starts a server, with the bucket made.
    pub(crate) fn start() -> S3Server {
        let venv = moto_venv();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(venv.join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let server = S3Server {
            child,
            endpoint: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(&server.endpoint).is_err() {
            assert!(
                started.elapsed() < SERVER_START_MAX,
                "moto_server did not listen on {} within {SERVER_START_MAX:?}",
                server.endpoint
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server.request("PUT", &format!("/{BUCKET}"));
        server
    }

    /// One plain HTTP request (moto does not check signatures); returns the response, which
    /// must be a success.
    fn request(&self, method: &str, path: &str) -> String {
        let mut stream = TcpStream::connect(&self.endpoint).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.endpoint
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 2") || response.starts_with("HTTP/1.0 2"),
            "{method} {path}: {response}"
        );
        response
    }

    /// The keys under `prefix` in the bucket.
    pub(crate) fn keys(&self, prefix: &str) -> Vec<String> {
        let response = self.request("GET", &format!("/{BUCKET}?list-type=2&prefix={prefix}"));
        response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// The bytes of the object at `key`.
    fn object(&self, key: &str) -> Vec<u8> {
        self.exchange("GET", key, &[])
    }

    /// Puts `bytes` at `key`, as anyone who can write the bucket could (no lease, no fence).
    fn plant(&self, key: &str, bytes: &[u8]) {
        self.exchange("PUT", key, bytes);
    }

    /// One plain HTTP request on object `key` with `body`; returns the response's body, which
    /// must be a success's (moto answers with the whole body, then closes). Moto refuses
    /// objects to a request without credentials, and checks no signature.
    fn exchange(&self, method: &str, key: &str, body: &[u8]) -> Vec<u8> {
        let mut stream = TcpStream::connect(&self.endpoint).unwrap();
        let head = format!(
            "{method} /{BUCKET}/{key} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\n\
             Authorization: {ANY_SIGNATURE}\r\nConnection: close\r\n\r\n",
            self.endpoint,
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
        assert!(head.starts_with("http/1.1 2"), "{method} {key}: {head}");
        assert!(!head.contains("transfer-encoding: chunked"), "{head}");
        response[end + 4..].to_vec()
    }

    /// The keys under `prefix` with a multipart upload begun and neither completed nor
    /// aborted.
    fn uploads(&self, prefix: &str) -> Vec<String> {
        let response = self.request("GET", &format!("/{BUCKET}?uploads&prefix={prefix}"));
        response
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split_once("</Key>").map(|(key, _)| key.to_owned()))
            .collect()
    }

    /// What a `host` command needs to use this server, its points under `prefix`.
    pub(crate) fn env(&self, prefix: &str) -> Vec<(String, String)> {
        [
            ("HOST_STORE", format!("s3://{BUCKET}/{prefix}")),
            ("AWS_ENDPOINT", format!("http://{}", self.endpoint)),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", "test".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The checkpoint numbers `host savepoints --job JOB --json` lists, failing on any unreadable.
fn listed_checkpoints(dir: &Dir, job: &str) -> Vec<u64> {
    let listed = dir.host_ok(&["savepoints", "--job", job, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    listed
        .as_array()
        .unwrap()
        .iter()
        .map(|point| {
            assert!(point["error"].is_null(), "unreadable point listed: {point}");
            point["checkpoint"].as_u64().unwrap()
        })
        .collect()
}

#[test]
fn a_savepoint_on_the_object_store_resumes_from_a_fresh_state_folder() {
    let server = S3Server::start();
    let dir = Dir::new(LINES).with_env(&server.env("team/a"));
    let job = dir.write_job(&WordCount::default());
    let (savepoint, location) = dir.run_then_stop_with_savepoint(&job, 600);
    assert_eq!(
        location,
        PathBuf::from(format!("s3://{BUCKET}/team/a/savepoints/{savepoint}"))
    );
    assert!(!dir.home().join("savepoints").join(&savepoint).exists());
    let keys = server.keys(&format!("team/a/savepoints/{savepoint}/"));
    assert!(
        keys.iter().any(|k| k.ends_with("/_metadata"))
            && keys.iter().any(|k| k.ends_with(".state")),
        "{keys:?}"
    );

    // A fresh state folder on the same store sees the savepoint, and resumes from it.
    std::fs::remove_dir_all(dir.home()).unwrap();
    assert!(dir.host_ok(&["savepoints"]).contains(&savepoint));
    assert!(
        dir.host_ok(&["inspect", &savepoint])
            .contains("all checksums verified")
    );
    dir.start(&[job.to_str().unwrap(), "--from", &savepoint])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));

    dir.host_ok(&["rm", &savepoint]);
    assert!(!dir.host_ok(&["savepoints"]).contains(&savepoint));
    assert!(
        server
            .keys(&format!("team/a/savepoints/{savepoint}/"))
            .is_empty()
    );
}

#[test]
fn a_point_on_the_object_store_runs_its_program_without_the_job_file_or_the_modules() {
    let server = S3Server::start();
    let dir = Dir::new(LINES).with_env(&server.env("team/b"));
    let job = crate::upgrade::job_with_own_components(&dir);
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 600);
    let counter = crate::upgrade::sha256_of(&dir.path().join("components/counter_v1.wasm"));
    let modules = server.keys("team/b/modules/");
    assert_eq!(modules.len(), 4, "{modules:?}");
    assert!(modules.contains(&format!("team/b/modules/{counter}.wasm")));
    assert!(
        !dir.home()
            .join("modules")
            .join(format!("{counter}.wasm"))
            .exists()
    );

    // Exported from the object store into a local folder: the point and its modules.
    let exported = dir.path().join("exported");
    dir.host_ok(&["export", &savepoint, exported.to_str().unwrap()]);
    assert!(
        exported
            .join("modules")
            .join(format!("{counter}.wasm"))
            .exists()
    );

    // A fresh state folder on the same store, the job file and the components gone.
    std::fs::remove_dir_all(dir.path().join("components")).unwrap();
    std::fs::remove_file(&job).unwrap();
    std::fs::remove_dir_all(dir.home()).unwrap();
    // A point on a shared store grants what it recorded only when told to.
    dir.refused(&["run", "--from", &savepoint], &["--trust-grants"]);
    dir.start(&["--from", &savepoint, "--trust-grants"])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));

    // The resumed job's checkpoints name the same modules: removing the savepoint keeps them.
    let removed = dir.host_ok(&["rm", &savepoint]);
    assert!(removed.contains("0 module(s) removed, 4 kept"), "{removed}");
    assert_eq!(server.keys("team/b/modules/").len(), 4);
}

#[test]
fn kill_9_during_a_checkpoint_upload_lists_no_half_point_and_resumes_exactly() {
    let server = S3Server::start();
    for (n, phase) in ["state-write", "metadata-written"].iter().enumerate() {
        let prefix = format!("crash{n}");
        let dir = Dir::new(LINES).with_env(&server.env(&prefix));
        let job = dir.write_job(&WordCount {
            checkpoint_interval_ms: 100,
            ..WordCount::default()
        });
        let crash_at = format!("{phase}:3");
        // Every state object a multipart upload, so that the crash at `state-write` (halfway
        // through one) lands in the middle of an upload.
        let (ok, stderr) = dir
            .command(&["run", job.to_str().unwrap(), "--crash-at", &crash_at])
            .env("HOST_TEST_MULTIPART_THRESHOLD_BYTES", "1")
            .output()
            .map(|out| {
                (
                    out.status.success(),
                    String::from_utf8_lossy(&out.stderr).into_owned(),
                )
            })
            .unwrap();
        assert!(
            !ok && stderr.contains(&format!("crash injected at {phase} of checkpoint 3")),
            "{stderr}"
        );
        let job_id = dir.host_ok(&["list"]);
        let job_id = job_id.split_whitespace().next().unwrap().to_owned();
        let half = format!("{prefix}/jobs/{job_id}/checkpoints/3/");
        let left = server.keys(&half);
        if *phase == "state-write" {
            let uploading = server.uploads(&half);
            assert!(!uploading.is_empty(), "the crash landed in no upload");
        }
        assert!(!left.iter().any(|k| k.ends_with("_metadata")), "{left:?}");
        if *phase == "metadata-written" {
            assert!(
                !left.is_empty(),
                "every state object is written before _metadata"
            );
        }
        let listed = listed_checkpoints(&dir, &job_id);
        assert!(
            !listed.is_empty() && listed.iter().all(|&c| c < 3),
            "{phase}: {listed:?}"
        );

        dir.start(&[job.to_str().unwrap(), "--from", &job_id])
            .wait_ok();
        assert_exactly_once(&dir.committed_output(), &input_text(LINES));
        assert!(listed_checkpoints(&dir, &job_id).iter().all(|&c| c < 3));
        // What the crash left is cleaned up on takeover, but for the empty `_metadata` that
        // keeps the point from ever being published.
        let abandoned = match left.is_empty() {
            true => vec![],
            false => vec![format!("{half}_metadata")],
        };
        assert_eq!(server.keys(&half), abandoned, "{phase}");
    }
}

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

/// A state object's multipart upload that fails halfway (a full disk's error, injected) is
/// aborted: the checkpoint fails, the job runs on, and no upload begun is left in the bucket.
#[test]
fn a_failed_multipart_upload_is_aborted_and_leaves_no_parts() {
    let server = S3Server::start();
    let prefix = "aborted";
    let dir = Dir::new(LINES).with_env(&server.env(prefix));
    let job = dir.write_job(&WordCount::default());
    let job = job.to_str().unwrap();
    let mut run = dir.command(&["run", job, "--checkpoint-interval", "0"]);
    let mut run = run
        .args(["--fail-write-at", "state-write:2"])
        .env("HOST_TEST_MULTIPART_THRESHOLD_BYTES", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let job_id = first_line(&mut run);
    let first = dir.save(&job_id);
    let refusal = dir.host_err(&["save", &job_id]);
    assert!(refusal.contains("No space left on device"), "{refusal}");
    let leftover = format!("{prefix}/jobs/{job_id}/checkpoints/2/");
    assert!(
        server.uploads(&leftover).is_empty(),
        "{:?}",
        server.uploads(&leftover)
    );
    assert!(
        dir.host_ok(&["inspect", &first])
            .contains("all checksums verified")
    );
    assert!(run.wait().unwrap().success());
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

/// A store whose bucket does not exist is refused before the job starts, saying once which
/// bucket at which endpoint, without the server's XML (object_store's error chain repeats it at
/// every layer).
#[test]
fn a_missing_bucket_is_named_once_with_its_endpoint() {
    let server = S3Server::start();
    let mut env = server.env("team/x");
    for (name, value) in &mut env {
        if name == "HOST_STORE" {
            *value = "s3://no-such-bucket/team/x".to_owned();
        }
    }
    let dir = Dir::new(LINES).with_env(&env);
    let job = dir.write_job(&WordCount::default());
    let output = dir.host(&["run", job.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    let said = format!(
        "bucket `no-such-bucket` does not exist at http://{}",
        server.endpoint
    );
    assert_eq!(stderr.matches(&said).count(), 1, "{stderr}");
    assert_eq!(stderr.matches("no-such-bucket").count(), 2, "{stderr}");
    assert!(!stderr.contains('<'), "{stderr}");
}

#[test]
fn a_job_on_3_workers_with_its_points_on_the_object_store_survives_the_kill_of_one() {
    let server = S3Server::start();
    let dir = Dir::new(LINES).with_env(&server.env("team/w"));
    let file = dir.write_job(&crate::cluster::job(4, 100));
    let running = dir.start(&[file.to_str().unwrap(), "--workers", "3"]);
    wait_until("output committed", || !dir.committed_output().is_empty());
    crate::cluster::kill_worker(&dir, "worker-2");
    let job = running.job.clone();
    let (ok, stderr) = running.wait();
    assert!(
        ok,
        "the job did not survive the kill of a worker:\n{stderr}"
    );
    assert!(
        stderr.contains("restarting from the latest checkpoint"),
        "{stderr}"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
    // Its checkpoints, the workers' state files with them, are on the store; none is in the
    // state folder.
    let keys = server.keys(&format!("team/w/jobs/{job}/checkpoints/"));
    assert!(keys.iter().any(|k| k.ends_with("/_metadata")), "{keys:?}");
    assert!(keys.iter().any(|k| k.ends_with(".state")), "{keys:?}");
    let local = dir.home().join("jobs").join(&job).join("checkpoints");
    let local: Vec<_> = std::fs::read_dir(&local)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(local.is_empty(), "{local:?}");
}
