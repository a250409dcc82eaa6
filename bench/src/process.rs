//! Process-level helpers: the rows that measure the host as a user meets it run the real `host`
//! binary (built next to this one) in separate processes, read the log lines they write to
//! stderr as they arrive, and stamp each with the moment it arrived; and the row that compares
//! the host with native code on one core pins this whole process to one.
//!
//! The "first record processed" that start-up and upgrades are timed to is the info-level line
//! `first batch processed subtask=<operator>[<index>]` a subtask logs once its guest has
//! processed its first batch since the subtask started (`host/src/runtime/subtask.rs`).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};

/// The log line of a subtask's first processed batch (without its subtask).
const FIRST_BATCH: &str = "first batch processed";

/// Longest wait for anything a `host` process is expected to do (dev builds on a shared
/// machine compile slowly).
pub const PATIENCE: Duration = Duration::from_secs(180);

/// The `host` binary built beside this one (`<target-dir>/<profile>/host`).
pub fn host_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the bench executable")?;
    let host = exe.with_file_name("host");
    if !host.is_file() {
        bail!(
            "no host binary at {}: build it with the benchmark (`just bench` does; or \
             `cargo build -p host --bin host` in the same profile)",
            host.display()
        );
    }
    Ok(host)
}

/// Runs `host run FILE ARGS` on the state folder `home` to its end, its log at warnings;
/// returns how long it took, from the command's start to its exit.
pub fn host_run(home: &Path, file: &Path, args: &[String]) -> anyhow::Result<Duration> {
    let mut command = Command::new(host_binary()?);
    command
        .arg("run")
        .arg(file)
        .args(args)
        .env("HOST_HOME", home)
        .env("HOST_LOG", "host=warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let started = Instant::now();
    let output = command.output().context("starting `host run`")?;
    let took = started.elapsed();
    if !output.status.success() {
        bail!(
            "`host run {} {}` failed ({}): {}",
            file.display(),
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(took)
}

/// A state folder and the `host` binary that works in it.
pub struct HostHome {
    binary: PathBuf,
    home: PathBuf,
}

impl HostHome {
    /// `host` commands on the state folder `home` (created by the first `host run`).
    pub fn new(binary: &Path, home: PathBuf) -> HostHome {
        HostHome {
            binary: binary.to_owned(),
            home,
        }
    }

    /// The state folder.
    pub fn path(&self) -> &Path {
        &self.home
    }

    fn command<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("HOST_HOME", &self.home)
            .env("HOST_LOG", "host=info")
            .stdin(Stdio::null());
        command
    }

    /// Starts `host run JOB_FILE [--from POINT]` in the background; the clock of
    /// [`Running::started`] starts just before the process is spawned.
    pub fn run(&self, job_file: &Path, from: Option<&str>) -> anyhow::Result<Running> {
        let mut args = vec![OsStr::new("run"), job_file.as_os_str()];
        if let Some(from) = from {
            args.extend([OsStr::new("--from"), OsStr::new(from)]);
        }
        let mut command = self.command(&args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let stdout = lines_of(child.stdout.take().expect("piped"));
        let stderr = lines_of(child.stderr.take().expect("piped"));
        Ok(Running {
            child,
            started,
            stdout,
            stderr,
            log: Vec::new(),
        })
    }

    /// Runs `host stop --save JOB` to its end; returns the savepoint's folder (its second line).
    pub fn stop_save(&self, job: &str) -> anyhow::Result<PathBuf> {
        let output = self.command(&["stop", "--save", job]).output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        match stdout.lines().nth(1) {
            Some(folder) if output.status.success() => Ok(PathBuf::from(folder)),
            _ => bail!(
                "`host stop --save {job}` failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }
}

impl HostHome {
    /// Runs `host upgrade JOB --operator OPERATOR --module MODULE` (a canary window of 1 000
    /// records) to its end; returns the pause it printed, in milliseconds, and the checkpoints
    /// the new module caught up at. The module must catch up (restored beside the running one
    /// first), as the row's label says.
    pub fn upgrade(&self, job: &str, operator: &str, module: &Path) -> anyhow::Result<(f64, u32)> {
        let mut args = vec![OsStr::new("upgrade"), OsStr::new(job)];
        args.extend([OsStr::new("--operator"), OsStr::new(operator)]);
        args.extend([OsStr::new("--module"), module.as_os_str()]);
        args.extend(["--canary-records", "1000", "--canary-ms", "0"].map(OsStr::new));
        let output = self.command(&args).output()?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let pause = stdout.lines().find_map(|l| l.strip_prefix("pause: "));
        let pause = pause.and_then(|p| p.strip_suffix(" ms")?.parse().ok());
        // What the row's label says was timed: a swap staged beside the running module.
        let staged = stdout
            .lines()
            .find(|l| l.starts_with("restored beside the running module from checkpoint "));
        let rounds = staged.and_then(|l| l.split_once(" at ")?.1.split(' ').next()?.parse().ok());
        match (pause, rounds) {
            (Some(ms), Some(rounds)) if output.status.success() => Ok((ms, rounds)),
            _ => bail!(
                "`host upgrade {job}` failed ({}): {}{}",
                output.status,
                stdout,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }
}

/// Each line that `stream` yields, with the moment it was read, on a channel (from a thread).
pub fn lines_of(stream: impl Read + Send + 'static) -> mpsc::Receiver<(Instant, String)> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            if send.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    receive
}

/// A `host run` process; killed if still running when dropped.
pub struct Running {
    child: Child,
    started: Instant,
    stdout: mpsc::Receiver<(Instant, String)>,
    stderr: mpsc::Receiver<(Instant, String)>,
    /// The stderr lines read so far, for errors.
    log: Vec<String>,
}

impl Running {
    /// When the process was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The job's id: the first line `host run` prints.
    pub fn job_id(&mut self) -> anyhow::Result<String> {
        match self.stdout.recv_timeout(PATIENCE) {
            Ok((_, id)) => Ok(id),
            Err(_) => Err(self.failure("printed no job id")),
        }
    }

    /// Waits for `subtask` (`operator[index]`) to log its first processed batch; returns when
    /// that line arrived.
    pub fn first_batch(&mut self, subtask: &str) -> anyhow::Result<Instant> {
        let field = format!("subtask={subtask}");
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((at, line)) = self.stderr.recv_timeout(left) else {
                return Err(self.failure(&format!("logged no first batch of {subtask}")));
            };
            let found = line.contains(FIRST_BATCH) && line.contains(&field);
            self.log.push(line);
            if found {
                return Ok(at);
            }
        }
    }

    /// The process's resident memory (`VmRSS` of `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        let kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .with_context(|| format!("no VmRSS in {path}"))?;
        Ok(kib * 1024)
    }

    /// Waits for the process to end by itself.
    pub fn wait(&mut self) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Err(self.failure("did not end"))
    }

    /// Stops the job as ctrl-c does (SIGTERM: the job is cancelled) and waits for its end.
    #[allow(unsafe_code)]
    pub fn terminate(&mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            // SAFETY: kill(2) on our own child's pid, which is not reaped yet.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        }
        self.wait().map(drop)
    }

    /// An error naming what the process failed to do, with what it logged.
    fn failure(&mut self, what: &str) -> anyhow::Error {
        self.log
            .extend(self.stderr.try_iter().map(|(_, line)| line));
        let status = self.child.try_wait().ok().flatten();
        let status = status.map_or("still running".to_owned(), |s| s.to_string());
        anyhow!(
            "`host run` {what} ({status}); its log:\n{}",
            self.log.join("\n")
        )
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Writes back dirty pages and drops the page cache, so that the next reads come from the
/// disk; false where the machine does not allow it (it needs root).
pub fn drop_page_cache() -> bool {
    rustix::fs::sync();
    std::fs::write("/proc/sys/vm/drop_caches", "3\n").is_ok()
}

/// While alive, every thread of this process (and every thread they start) runs on one core
/// only: the first of those the process may run on. Dropping it restores the earlier set.
pub struct OneCore {
    before: libc::cpu_set_t,
}

impl OneCore {
    /// Pins the whole process to one core.
    #[allow(unsafe_code)]
    pub fn pin() -> anyhow::Result<OneCore> {
        // SAFETY: a cpu_set_t is plain bits; all zero is the empty set.
        let mut before: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: `before` is a valid cpu_set_t of `size` bytes; 0 is this thread.
        if unsafe { libc::sched_getaffinity(0, size, &mut before) } != 0 {
            return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
        }
        let first = (0..libc::CPU_SETSIZE as usize)
            // SAFETY: `cpu` is below CPU_SETSIZE.
            .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &before) })
            .context("this process may run on no core")?;
        // SAFETY: as above.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `first` is below CPU_SETSIZE.
        unsafe { libc::CPU_SET(first, &mut one) };
        set_every_thread(&one)?;
        Ok(OneCore { before })
    }
}

impl Drop for OneCore {
    fn drop(&mut self) {
        if let Err(e) = set_every_thread(&self.before) {
            eprintln!("bench: could not unpin the process: {e:#}");
        }
    }
}

/// Sets the affinity of every thread of this process (twice over, for threads started while
/// the first pass ran: they inherit their creator's set, which may not have been set yet).
#[allow(unsafe_code)]
fn set_every_thread(set: &libc::cpu_set_t) -> anyhow::Result<()> {
    for _ in 0..2 {
        for entry in std::fs::read_dir("/proc/self/task")? {
            let Ok(tid) = entry?.file_name().to_string_lossy().parse::<libc::pid_t>() else {
                continue;
            };
            let size = std::mem::size_of::<libc::cpu_set_t>();
            // SAFETY: `set` is a valid cpu_set_t of `size` bytes; a thread that ended since
            // the listing only makes the call fail with ESRCH.
            if unsafe { libc::sched_setaffinity(tid, size, set) } != 0 {
                let error = std::io::Error::last_os_error();
                if error.raw_os_error() != Some(libc::ESRCH) {
                    return Err(error).context("sched_setaffinity");
                }
            }
        }
    }
    Ok(())
}
