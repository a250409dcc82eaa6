//! Rescaling as a user meets it, through separate `host` processes: a keyed count over many
//! keys runs at parallelism 2; `host stop JOB --save`; then `host run` of the job file at
//! parallelism 3 `--from` that savepoint, until the first record reaches a sink. Against the
//! same stop and resume without rescaling (2 -> 2), on the same state folder, in one run.
//!
//! The job: generator (parallelism 1; it does not rescale) -> key-by -> counter-v1 (keyed
//! state, SDK key groups) -> forward -> file sink. The file sink rather than the null sink,
//! because it shows from outside the process when the first record arrives: its first `write`
//! after a resume creates `.staging/<subtask>.current` in the output folder (`recover` removes
//! those a stop leaves, and a stop with a savepoint leaves none).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::jobs::{edge, operator};
use crate::{Row, Sizes};

/// Longest the first job may take to build its state, and a resumed one to write a record.
const WAIT_MAX: Duration = Duration::from_secs(600);
/// How often the output folder is looked at.
const POLL: Duration = Duration::from_millis(1);
/// How long each job runs before it is stopped: every measured stop follows as much work, so
/// that each `stop --save` has as much of the sink's output to sync.
const RUN_BEFORE_STOP: Duration = Duration::from_millis(300);

/// A `host run` process and the job it runs.
struct Running {
    child: Child,
    job: String,
}

/// The `host` binary, the working folder, and the log of every process started.
struct Host {
    binary: PathBuf,
    dir: PathBuf,
    log: PathBuf,
}

impl Host {
    /// The `host` binary beside the bench, working in `dir` (created, with its `output`).
    fn beside_bench(dir: PathBuf) -> anyhow::Result<Host> {
        let exe = std::env::current_exe()?;
        let binary = exe.with_file_name("host");
        if !binary.exists() {
            bail!(
                "no {} beside the bench: build it (`cargo build -p host --bin host`, with \
                 `--release` for a release bench; `just bench` does)",
                binary.display()
            );
        }
        std::fs::create_dir_all(dir.join("output"))?;
        Ok(Host {
            binary,
            log: dir.join("host.log"),
            dir,
        })
    }

    fn command(&self, args: &[&str]) -> anyhow::Result<Command> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .current_dir(&self.dir)
            .env("HOST_HOME", self.dir.join("home"))
            .env("HOST_LOG", "host=warn")
            .stdin(Stdio::null())
            .stderr(log);
        Ok(command)
    }

    /// A failure, with the end of the processes' log.
    fn failed(&self, what: &str) -> anyhow::Error {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        anyhow!("rescale benchmark: {what}; log:\n{}", tail.join("\n"))
    }

    /// Runs a `host` command to its end; returns its stdout.
    fn output(&self, args: &[&str]) -> anyhow::Result<String> {
        let out = self.command(args)?.output()?;
        if !out.status.success() {
            return Err(self.failed(&format!("`host {}` failed", args.join(" "))));
        }
        Ok(String::from_utf8(out.stdout)?)
    }

    /// Starts `host run ARGS`; returns once it has printed its job's id.
    fn run(&self, args: &[&str]) -> anyhow::Result<Running> {
        let mut child = self
            .command(&[&["run"], args].concat())?
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = child.stdout.take().expect("piped");
        let mut job = String::new();
        BufReader::new(stdout).read_line(&mut job)?;
        if job.trim().is_empty() {
            return Err(self.failed("`host run` printed no job id"));
        }
        let job = job.trim().to_owned();
        Ok(Running { child, job })
    }
}

/// The job file at `parallelism` (the counter's and the sink's).
fn job_file(guests: &Path, keys: usize, parallelism: u32) -> String {
    let generator = format!("config = {{ records = \"1000000000000\", keys = \"{keys}\" }}");
    let sink = "config = { dir = \"/output\" }\n\
                mounts = [{ host = \"output\", guest = \"/output\", writable = true }]";
    "checkpoint_interval_ms = 0\n".to_owned()
        + &operator(
            "generator",
            "source",
            &guests.join("generator.wasm"),
            1,
            &generator,
        )
        + &operator(
            "counter",
            "operator",
            &guests.join("counter_v1.wasm"),
            parallelism,
            "",
        )
        + &operator(
            "sink",
            "sink",
            &guests.join("file_sink.wasm"),
            parallelism,
            sink,
        )
        + &edge("generator", "counter", "key-by")
        + &edge("counter", "sink", "forward")
}

/// Bytes of every file under `dir`, sub-folders included.
fn bytes_under(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => bytes_under(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Whether a sink subtask has written a record since the last stop.
fn first_record_written(output: &Path) -> bool {
    std::fs::read_dir(output.join(".staging")).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name().to_string_lossy().ends_with(".current"))
    })
}

/// Waits until `done`, or fails after [`WAIT_MAX`].
fn wait_for(host: &Host, what: &str, done: impl Fn() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > WAIT_MAX {
            return Err(host.failed(&format!("no {what} within {WAIT_MAX:?}")));
        }
        std::thread::sleep(POLL);
    }
    Ok(())
}

/// After the job has run [`RUN_BEFORE_STOP`]: `host stop JOB --save`, the old process's end,
/// then `host run JOB_FILE --from SAVEPOINT` until a sink writes its first record. Returns the
/// new job, the savepoint, and the time from the stop's start to that record.
fn stop_and_resume(
    host: &Host,
    mut running: Running,
    job_file: &str,
) -> anyhow::Result<(Running, String, Duration)> {
    std::thread::sleep(RUN_BEFORE_STOP);
    let started = Instant::now();
    let saved = host.output(&["stop", &running.job, "--save"])?;
    let savepoint = saved.lines().next().unwrap_or_default().to_owned();
    running.child.wait()?;
    let output = host.dir.join("output");
    if first_record_written(&output) {
        bail!("a stop with a savepoint left a sink's current file behind");
    }
    let resumed = host.run(&[job_file, "--from", &savepoint])?;
    wait_for(host, "record written after the resume", || {
        first_record_written(&output)
    })?;
    Ok((resumed, savepoint, started.elapsed()))
}

/// Rescaling 2 -> 3 against resuming 2 -> 2, each from `host stop --save` to the first record
/// at a sink of the resumed job, separate `host` processes (`bin_dir/host`).
pub fn rescale(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let host = Host::beside_bench(scratch.join("rescale"))?;
    let keys = sizes.rescale_keys;
    for parallelism in [2, 3] {
        let text = job_file(guests, keys, parallelism);
        std::fs::write(host.dir.join(format!("job-{parallelism}.toml")), text)?;
    }
    let running = host.run(&["job-2.toml"])?;
    wait_for_filled_state(&host, keys)?;
    let rounds = Rounds::measure(&host, running, sizes.repetitions.min(3))?;
    Ok(vec![rounds.row(keys)])
}

/// Waits until the job's sinks have written enough for its counter to hold most of the keys.
fn wait_for_filled_state(host: &Host, keys: usize) -> anyhow::Result<()> {
    // At least three records per key (most keys seen) before the first stop: each output
    // line is `k<n> <count>\n`, at most this long while counts have one digit.
    let line_bytes = (keys - 1).to_string().len() + 4;
    let fill_bytes = (3 * keys * line_bytes) as u64;
    let output = host.dir.join("output");
    wait_for(host, "keyed state filled", || {
        bytes_under(&output) >= fill_bytes
    })
}

/// The measured stops and resumes, and the size of the last savepoint rescaled.
struct Rounds {
    same: Vec<Duration>,
    rescaled: Vec<Duration>,
    state_bytes: u64,
}

impl Rounds {
    /// From `running` at parallelism 2, `rounds` times: an unmeasured resume 2 -> 2, a measured
    /// 2 -> 2, then a measured rescale 2 -> 3. Then stops the job.
    fn measure(host: &Host, mut running: Running, rounds: usize) -> anyhow::Result<Rounds> {
        let (mut same, mut rescaled, mut state_bytes) = (Vec::new(), Vec::new(), 0);
        for _ in 0..rounds {
            // Unmeasured: back to parallelism 2, after as short a run as the measured ones.
            (running, _, _) = stop_and_resume(host, running, "job-2.toml")?;
            let (next, _, elapsed) = stop_and_resume(host, running, "job-2.toml")?;
            same.push(elapsed);
            let (next, savepoint, elapsed) = stop_and_resume(host, next, "job-3.toml")?;
            rescaled.push(elapsed);
            running = next;
            state_bytes = bytes_under(&host.dir.join("home/savepoints").join(savepoint));
        }
        host.output(&["stop", &running.job])?;
        running.child.wait()?;
        Ok(Rounds {
            same,
            rescaled,
            state_bytes,
        })
    }

    /// The fastest rescale against the fastest resume without rescaling, over `keys` keys.
    fn row(&self, keys: usize) -> Row {
        let ms = |times: &[Duration]| times.iter().min().expect("a round").as_secs_f64() * 1e3;
        let (same, rescaled) = (ms(&self.same), ms(&self.rescaled));
        Row {
            name: format!(
                "rescale 2 -> 3, keyed count over {} k keys ({:.1} MiB savepoint): `host stop \
                 --save` to a sink's first record in `host run --from`",
                keys / 1_000,
                self.state_bytes as f64 / (1 << 20) as f64
            ),
            value: rescaled,
            unit: "ms",
            baseline: Some(same),
            baseline_name: "the same stop and resume at parallelism 2 -> 2",
            ratio: Some(same / rescaled),
            target: "≤ 2× the 2 -> 2 resume",
            met: Some(rescaled <= 2.0 * same),
        }
    }
}
