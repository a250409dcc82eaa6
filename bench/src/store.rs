//! Savepoints on an S3-compatible object store (`--store s3://…`) against the local state
//! folder: the same savepoint (subtasks' states written at once, `_metadata`, publish) written and
//! restored through both back-ends of the store, in alternating rounds, the fastest counting.
//!
//! The object store is moto's S3 server, on 127.0.0.1, started here from the virtual
//! environment the S3 tests install (`<target-dir>/venv-moto`, by `tests/s3/install-moto.sh`);
//! without it the rows are skipped, and the reason printed. Moto is a test server written in
//! Python and holds every object in memory: these rows measure the host's object-store path
//! against the local folder's, not what a production object store would give.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use host::ids::{CheckpointId, JobId};
use host::store::object::{ObjectPoints, StoreUrl};
use host::store::{JobState, JobStatus, Store};
use object_store::aws::{AmazonS3Builder, S3ConditionalPut};

use crate::disk::store_round;
use crate::{Row, Sizes};

/// Longest the S3 server may take to accept connections.
const SERVER_START_MAX: Duration = Duration::from_secs(60);
const BUCKET: &str = "bench";
/// Subtasks' states per savepoint (each a segment and a state file).
const BLOBS: usize = 8;

/// Moto's S3 server on a free port of 127.0.0.1; killed when dropped.
pub(crate) struct Moto {
    child: Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Starts `moto_server` and creates the bucket.
    pub(crate) fn start(server: &Path) -> anyhow::Result<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", server.display()))?;
        let moto = Moto {
            child,
            endpoint: format!("127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(&moto.endpoint).is_err() {
            if started.elapsed() > SERVER_START_MAX {
                bail!(
                    "{} did not listen within {SERVER_START_MAX:?}",
                    server.display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        moto.create_bucket()?;
        Ok(moto)
    }

    /// `PUT /bucket`, in plain HTTP: moto checks no signature.
    fn create_bucket(&self) -> anyhow::Result<()> {
        let mut stream = TcpStream::connect(&self.endpoint)?;
        write!(
            stream,
            "PUT /{BUCKET} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.endpoint
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        if !response.starts_with("HTTP/1.1 2") {
            bail!("creating bucket {BUCKET} on moto: {response}");
        }
        Ok(())
    }

    /// The environment of a `host` process whose points live on this server, under `prefix`
    /// (as the S3 tests give it).
    pub(crate) fn env(&self, prefix: &str) -> Vec<(&'static str, String)> {
        vec![
            ("HOST_STORE", format!("s3://{BUCKET}/{prefix}")),
            ("AWS_ENDPOINT", format!("http://{}", self.endpoint)),
            ("AWS_ALLOW_HTTP", "true".to_owned()),
            ("AWS_ACCESS_KEY_ID", "bench".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
            ("AWS_REGION", "us-east-1".to_owned()),
        ]
    }

    /// A state folder under `home` whose points live on this server, under `prefix`.
    fn store(&self, home: &Path, prefix: &str) -> anyhow::Result<Store> {
        host::store::object::install_crypto_provider();
        let s3 = AmazonS3Builder::new()
            .with_endpoint(format!("http://{}", self.endpoint))
            .with_allow_http(true)
            .with_bucket_name(BUCKET)
            .with_access_key_id("bench")
            .with_secret_access_key("bench")
            .with_region("us-east-1")
            .with_conditional_put(S3ConditionalPut::ETagMatch)
            .build()?;
        let url = StoreUrl {
            bucket: BUCKET.to_owned(),
            prefix: prefix.to_owned(),
        };
        let store = Store::open(home)?;
        let points = ObjectPoints::new(Arc::new(s3), url, store.layout().clone())?;
        Ok(store.with_points(points))
    }
}

/// Savepoint write and restore bandwidth on moto's S3 server against the local state folder.
/// Runs on a thread of its own: the object store's calls wait for their own runtime.
pub fn object_store_bandwidth(
    target_dir: &Path,
    scratch: &Path,
    sizes: Sizes,
) -> anyhow::Result<Vec<Row>> {
    let server = target_dir.join("venv-moto/bin/moto_server");
    if !server.exists() {
        eprintln!(
            "bench: skipping the object-store rows: no {} (the S3 tests install it on first \
             use; or run `bash tests/s3/install-moto.sh {}`)",
            server.display(),
            target_dir.join("venv-moto").display()
        );
        return Ok(Vec::new());
    }
    let moto = Moto::start(&server)?;
    let job: JobId = "job-bench".parse().map_err(anyhow::Error::msg)?;
    let object = moto.store(&scratch.join("object-home"), "points")?;
    // The job's lease on the object store: a savepoint is published under it.
    object.create_job(&bench_job(&job)?, "", CheckpointId(1))?;
    let local = Store::open(scratch.join("object-local-home"))?;
    let blob_bytes = sizes.object_store_bytes / BLOBS;
    let blob: Vec<u8> = (0..blob_bytes).map(|i| (i * 31 % 251) as u8).collect();
    let (mut best_object, mut best_local) = ((0.0f64, 0.0f64), (0.0f64, 0.0f64));
    for _ in 0..sizes.repetitions.min(3) {
        let (write, read) = store_round(&local, &job, &blob, BLOBS)?;
        best_local = (best_local.0.max(write), best_local.1.max(read));
        let (write, read) = store_round(&object, &job, &blob, BLOBS)?;
        best_object = (best_object.0.max(write), best_object.1.max(read));
    }
    let mib = (BLOBS * blob_bytes) >> 20;
    let row = |what: &str, value: f64, local: f64| Row {
        name: format!(
            "savepoint {what} on an S3-compatible server (moto, 127.0.0.1), {mib} MiB in \
             {BLOBS} subtasks"
        ),
        value,
        unit: "MiB/s",
        baseline: Some(local),
        baseline_name: "the same through the local state folder",
        ratio: Some(value / local),
        target: "",
        met: None,
    };
    Ok(vec![
        row("write", best_object.0, best_local.0),
        row("restore", best_object.1, best_local.1),
    ])
}

/// The status of the benchmark's job, running in this process.
fn bench_job(job: &JobId) -> anyhow::Result<JobStatus> {
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| anyhow!("{e}"))?
        .as_millis() as u64;
    Ok(JobStatus {
        job: job.clone(),
        name: "bench".to_owned(),
        started_unix_ms,
        resumed_from: None,
        writable_mounts: Vec::new(),
        modules: Vec::new(),
        state: JobState::Running {
            pid: std::process::id(),
        },
    })
}
