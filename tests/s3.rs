//! Checkpoints and savepoints on an S3-compatible object store (`--store s3://…`), against a
//! real server: moto's `moto_server` (pinned, installed by `tests/s3/install-moto.sh` into
//! `<target-dir>/venv-moto`), started on a free port of 127.0.0.1 for each test and stopped
//! when the test ends, passing or not. No part of the S3 API is mocked.
//!
//! Here, one state folder on the store: points resumed elsewhere, a crash mid-upload, a failed
//! multipart upload, a missing bucket, a job on workers. Two sharing a prefix, as two machines:
//! [`machines`]. The server: [`server`].

mod machines;
mod server;

use std::path::PathBuf;
use std::process::Stdio;

use crate::util::{Dir, WordCount, assert_exactly_once, first_line, input_text, wait_until};
use server::BUCKET;
pub(crate) use server::S3Server;

const LINES: usize = 3_000;

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
    // The refusal comes as soon as one subtask's write fails; the other subtasks' uploads of
    // that checkpoint end on their own a moment later. None may stay open.
    wait_until("no multipart upload left open", || {
        server.uploads(&leftover).is_empty()
    });
    assert!(
        dir.host_ok(&["inspect", &first])
            .contains("all checksums verified")
    );
    assert!(run.wait().unwrap().success());
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
