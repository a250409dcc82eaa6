//! `host run --detach` and `host logs`: a job in the background, its output in
//! `jobs/<id>/log`.
//!
//! The command starts itself again, without `--detach`, in its own process group, its stdout and
//! stderr going to a file of the state folder that the job moves to `jobs/<id>/log` once it has
//! an id (before printing it). The first process prints the id as soon as the file shows it and
//! returns; if the job is refused first, it prints the refusal and returns its exit code.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use host::ids::JobId;
use host::store::{JobState, Store};

/// How often the log is looked at for news.
const POLL_MS: u64 = 50;

/// Where a detached job's output goes until it has an id.
fn pending_log(store: &Store) -> PathBuf {
    store
        .layout()
        .root()
        .join(format!("detaching-{}.log", std::process::id()))
}

/// Starts `host run ARGS` (the arguments as typed, less `--detach`) in the background.
pub(super) fn run_detached(store: &Store) -> anyhow::Result<ExitCode> {
    let args: Vec<OsString> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--detach")
        .collect();
    let log = pending_log(store);
    let file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut reader = std::fs::File::open(&log)?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(args)
        .arg("--log-file")
        .arg(&log)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .process_group(0)
        .spawn()
        .context("cannot start the detached job")?;
    let mut seen = String::new();
    loop {
        // The job moves the file into its folder before it prints its id: a line in a file
        // not yet moved is a refusal's.
        let moved = !log.exists();
        reader.read_to_string(&mut seen)?;
        if let (true, Some((id, _))) = (moved, seen.split_once('\n')) {
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        if let Some(status) = child.try_wait()? {
            reader.read_to_string(&mut seen)?;
            let _ = std::fs::remove_file(&log);
            eprint!("{seen}");
            return Ok(ExitCode::from(status.code().unwrap_or(1) as u8));
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// Moves a detached job's output file to `jobs/<id>/log` (the job's folder exists by now).
pub(super) fn claim_log(store: &Store, pending: &Path, job: &JobId) -> anyhow::Result<()> {
    let log = store.layout().job_log(job);
    std::fs::rename(pending, &log)
        .with_context(|| format!("cannot move {} to {}", pending.display(), log.display()))
}

/// `host logs JOB [--follow]`: the job's log; with `follow`, until the job ends.
pub(super) fn logs(store: &Store, job: &JobId, follow: bool) -> anyhow::Result<ExitCode> {
    let path = store.layout().job_log(job);
    let mut file = match std::fs::File::open(&path) {
        Ok(file) => file,
        Err(_) if store.read_status(job).is_err() => {
            anyhow::bail!("no job `{job}` (see `host list`)")
        }
        Err(_) => anyhow::bail!("job `{job}` has no log (only `host run --detach` writes one)"),
    };
    let mut out = std::io::stdout();
    loop {
        // Whether it runs is asked before reading, so that its last lines are not missed.
        let running = follow && process_runs(store, job);
        std::io::copy(&mut file, &mut out)?;
        out.flush()?;
        if !running {
            return Ok(ExitCode::SUCCESS);
        }
        // A file read to its end reads on from there once it has grown.
        std::thread::sleep(Duration::from_millis(POLL_MS));
    }
}

/// Whether the process running `job` is still there: its status says running (a job writes its
/// final status after its last line) and its process exists.
fn process_runs(store: &Store, job: &JobId) -> bool {
    match store.read_status(job).map(|s| s.state) {
        Ok(JobState::Running { pid }) => Path::new(&format!("/proc/{pid}")).exists(),
        _ => false,
    }
}
