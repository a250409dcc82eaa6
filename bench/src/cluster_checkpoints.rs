//! Checkpoints of a job on 3 `host worker` processes against 1, its points on the S3-compatible
//! server (moto, as the S3 tests and the object-store rows start it): the peer job at
//! parallelism 3, checkpoints every second, `host run --workers W` with `HOST_STORE=s3://…`;
//! a checkpoint's time is from the coordinator's `triggering` log line to its `checkpoint
//! complete` line (each stamped when this process reads it from the `host run` process's
//! stderr), for the first checkpoints of a run; the median counts. Skipped, with a line saying
//! why, without moto's virtual environment.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use anyhow::Context as _;

use crate::jobs::peer_text_at;
use crate::process::{PATIENCE, host_binary, lines_of};
use crate::runs::Runs;
use crate::store::Moto;
use crate::{Row, Sizes};

/// The number after `checkpoint=` in a log line.
fn checkpoint_of(line: &str) -> Option<u64> {
    let rest = line.split("checkpoint=").nth(1)?;
    rest.split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// Reads `lines` until `count` checkpoints completed; returns the time of each, from its
/// trigger to its completion.
fn checkpoint_times(
    lines: &Receiver<(Instant, String)>,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (mut triggered, mut times) = (std::collections::HashMap::new(), Vec::new());
    let deadline = Instant::now() + PATIENCE;
    while times.len() < count {
        let left = deadline.saturating_duration_since(Instant::now());
        let (at, line) = lines
            .recv_timeout(left)
            .context("`host run --workers` completed too few checkpoints")?;
        match checkpoint_of(&line) {
            Some(n) if line.contains("triggering") => drop(triggered.insert(n, at)),
            Some(n) if line.contains("checkpoint complete") => {
                if let Some(start) = triggered.remove(&n) {
                    times.push(at - start);
                }
            }
            _ => {}
        }
    }
    Ok(times)
}

/// Runs the job on `workers` workers until `count` checkpoints completed, then stops it;
/// returns their times.
fn run_on(
    file: &Path,
    home: &Path,
    moto: &Moto,
    workers: u32,
    count: usize,
) -> anyhow::Result<Vec<Duration>> {
    let mut command = Command::new(host_binary()?);
    command
        .arg("run")
        .arg(file)
        .args(["--workers", &workers.to_string()])
        .env("HOST_HOME", home)
        .env("HOST_LOG", "host=info,host::runtime::coordinator=debug")
        .envs(moto.env(&format!("checkpoints-{workers}")))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command.spawn().context("starting `host run --workers`")?;
    let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().context("piped")?);
    let lines = lines_of(stderr);
    let times = checkpoint_times(&lines, count);
    // As ctrl-c stops it: the job is cancelled, and the workers with it.
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    child.wait()?;
    times
}

/// The median checkpoint time on 3 workers against 1, on moto.
pub fn on_s3(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let target_dir = scratch
        .parent()
        .context("the scratch folder has a parent")?;
    let server = target_dir.join("venv-moto/bin/moto_server");
    if !server.exists() {
        eprintln!(
            "bench: skipping the checkpoints-on-workers row: no {} (`bash \
             tests/s3/install-moto.sh {}` installs it)",
            server.display(),
            target_dir.join("venv-moto").display()
        );
        return Ok(Vec::new());
    }
    let moto = Moto::start(&server)?;
    let dir = scratch.join("cluster-checkpoints");
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("job.toml");
    let keys = sizes.overhead_keys;
    // Never ending: stopped once its checkpoints are timed.
    std::fs::write(&file, peer_text_at(guests, usize::MAX / 2, keys, 1_000, 3))?;
    let count = sizes.cluster_checkpoints;
    let ms = |times: Vec<Duration>| Runs(times.iter().map(|d| d.as_secs_f64() * 1e3).collect());
    let one = ms(run_on(&file, &dir.join("home-1"), &moto, 1, count)?);
    let three = ms(run_on(&file, &dir.join("home-3"), &moto, 3, count)?);
    Ok(vec![Row {
        name: format!(
            "checkpoint on 3 `host worker` processes, peer job at parallelism 3 over {} k keys, \
             points on moto (S3, 127.0.0.1), every 1 s: coordinator's trigger to complete \
             (its log lines), median of the first {count} (3 workers: {:.0} to {:.0} ms)",
            keys / 1_000,
            three.range().0,
            three.range().1
        ),
        value: three.median(),
        unit: "ms",
        baseline: Some(one.median()),
        baseline_name: "the same job on 1 worker process, timed alike",
        ratio: Some(one.median() / three.median()),
        target: "",
        met: None,
    }])
}
