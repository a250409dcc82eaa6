//! Helpers for the end-to-end tests: a scratch folder with a word-count job, the `host`
//! binary, and the expected output computed independently of the host.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

pub use crate::expect::{
    FileState, Tree, assert_exactly_once, assert_same_tree, assert_v1_then_v2, committed_output_in,
    input_text, word_counts,
};

/// Longest any single job may run in a test before it counts as hung.
const JOB_WAIT_MAX: Duration = Duration::from_secs(120);

/// Cargo's target directory, wherever it is (`target/`, `CARGO_TARGET_DIR`, `build.target-dir`):
/// the `host` binary under test is `<target-dir>/<profile>/host`.
pub fn target_dir() -> PathBuf {
    let host = Path::new(env!("CARGO_BIN_EXE_host"));
    host.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("{} is not <target-dir>/<profile>/host", host.display()))
        .to_path_buf()
}

/// The compiled example component `name` (e.g. `counter_v1`), built by `just guests` into
/// `<target-dir>/wasm32-wasip2/guest`.
pub fn guest(name: &str) -> PathBuf {
    let path = target_dir()
        .join("wasm32-wasip2/guest")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `just guests` (or `./dev test`) first",
        path.display()
    );
    path
}

/// A job file's `[[operators]]` table of `lines`, the line source reading `input/words.txt` of
/// the job's folder (a [`Dir`]).
pub fn line_source_table() -> String {
    let mount = r#"{ host = "input", guest = "/input" }"#;
    operator_table(
        "lines",
        "source",
        "line_source",
        r#"{ path = "/input/words.txt" }"#,
        mount,
    )
}

/// A job file's `[[operators]]` table of `sink`, the file sink writing into `output/` of the
/// job's folder (a [`Dir`]), which [`Dir::committed_output`] reads.
pub fn file_sink_table() -> String {
    let mount = r#"{ host = "output", guest = "/output", writable = true }"#;
    operator_table("sink", "sink", "file_sink", r#"{ dir = "/output" }"#, mount)
}

/// A job file's `[[operators]]` table of operator `id`, of `role`, running the example
/// component `module` with `config` and one mount.
fn operator_table(id: &str, role: &str, module: &str, config: &str, mount: &str) -> String {
    let module = guest(module);
    let module = module.display();
    format!(
        "\n[[operators]]\nid = \"{id}\"\nrole = \"{role}\"\nmodule = \"{module}\"\n\
         config = {config}\nmounts = [{mount}]\n"
    )
}

/// A scratch folder holding a state folder (`home`), an input file and a job file.
pub struct Dir {
    tmp: tempfile::TempDir,
    /// Environment variables every `host` command gets (e.g. the object store's).
    env: Vec<(String, String)>,
}

/// What the word-count job file is made of.
pub struct WordCount {
    /// Component of the `counter` operator.
    pub counter: PathBuf,
    /// Id of the counter operator.
    pub counter_id: &'static str,
    /// Parallelism of the counter.
    pub counter_parallelism: u32,
    /// Parallelism of the tokenizer (and of the `hostile` operator, joined to it by a
    /// forward edge).
    pub tokenizer_parallelism: u32,
    /// Parallelism of the line source.
    pub source_parallelism: u32,
    /// Parallelism of the file sink.
    pub sink_parallelism: u32,
    /// Source throttle, lines per second.
    pub lines_per_second: u64,
    /// Checkpoint interval.
    pub checkpoint_interval_ms: u64,
    /// Checkpoints retained.
    pub checkpoints_retained: u32,
    /// If set, a `hostile` pass-through operator between `tokenize` and the counter, with
    /// these job-file lines (its `config`, limits) added to its table.
    pub hostile: Option<String>,
    /// Grants of the `hostile` operator besides its writable `/scratch`: TOML inline tables,
    /// comma-separated (e.g. `{ host = "granted", guest = "/granted" }`).
    pub hostile_mounts: String,
    /// Restarts allowed.
    pub restart_attempts: u32,
}

impl Default for WordCount {
    fn default() -> Self {
        WordCount {
            counter: guest("counter_v1"),
            counter_id: "counter",
            counter_parallelism: 2,
            tokenizer_parallelism: 2,
            source_parallelism: 1,
            sink_parallelism: 2,
            lines_per_second: 1_500,
            checkpoint_interval_ms: 200,
            checkpoints_retained: 2,
            hostile: None,
            hostile_mounts: String::new(),
            restart_attempts: 0,
        }
    }
}

impl Dir {
    /// A fresh scratch folder with `lines` lines of deterministic words as input.
    pub fn new(lines: usize) -> Dir {
        let dir = Dir::cold(lines);
        crate::module_cache::share_into(&dir.home());
        dir
    }

    /// A fresh scratch folder whose state folder's compiled-module cache starts empty.
    pub fn cold(lines: usize) -> Dir {
        let tmp = tempfile::Builder::new()
            .prefix("e2e")
            .tempdir()
            .expect("tempdir");
        std::fs::create_dir_all(tmp.path().join("input")).unwrap();
        std::fs::create_dir_all(tmp.path().join("output")).unwrap();
        std::fs::create_dir_all(tmp.path().join("scratch")).unwrap();
        std::fs::write(tmp.path().join("input/words.txt"), input_text(lines)).unwrap();
        // What it compiles is keyed as the shared cache is, to be shared when it is dropped.
        crate::module_cache::share_key(&tmp.path().join("home"));
        Dir {
            tmp,
            env: Vec::new(),
        }
    }

    /// This scratch folder, with `vars` set for every `host` command run in it.
    pub fn with_env(mut self, vars: &[(String, String)]) -> Dir {
        self.env.extend_from_slice(vars);
        self
    }

    /// The scratch folder.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// The state folder the host uses.
    pub fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    /// Writes `job.toml` for a word count and returns its path.
    pub fn write_job(&self, job: &WordCount) -> PathBuf {
        self.write_job_in(self.path(), job)
    }

    /// Writes a word count's `job.toml` into folder `dir`, beside its own copy of the input and
    /// its own output, and returns its path: a second job on the same state folder.
    pub fn write_job_in(&self, dir: &Path, job: &WordCount) -> PathBuf {
        if dir != self.path() {
            for sub in ["input", "output", "scratch"] {
                std::fs::create_dir_all(dir.join(sub)).unwrap();
            }
            std::fs::copy(
                self.path().join("input/words.txt"),
                dir.join("input/words.txt"),
            )
            .unwrap();
        }
        let counted = if job.hostile.is_some() {
            "hostile"
        } else {
            "tokenize"
        };
        let mut text = format!(
            r#"
name = "wordcount"
checkpoint_interval_ms = {interval}
checkpoints_retained = {retained}
restart = {{ attempts = {attempts}, delay_ms = 100 }}

[[operators]]
id = "lines"
role = "source"
module = "{source}"
parallelism = {source_parallelism}
records_per_second_max = {rate}
config = {{ path = "/input/words.txt" }}
mounts = [{{ host = "input", guest = "/input" }}]

[[operators]]
id = "tokenize"
role = "operator"
module = "{tokenizer}"
parallelism = {tokenizer_parallelism}

[[operators]]
id = "{counter_id}"
role = "operator"
module = "{counter}"
parallelism = {counter_parallelism}

[[operators]]
id = "sink"
role = "sink"
module = "{sink}"
parallelism = {sink_parallelism}
config = {{ dir = "/output" }}
mounts = [{{ host = "output", guest = "/output", writable = true }}]

[[edges]]
from = "lines"
to = "tokenize"
partition = "rebalance"

[[edges]]
from = "{counted}"
to = "{counter_id}"
partition = "key-by"

[[edges]]
from = "{counter_id}"
to = "sink"
partition = "rebalance"
"#,
            interval = job.checkpoint_interval_ms,
            retained = job.checkpoints_retained,
            source = guest("line_source").display(),
            rate = job.lines_per_second,
            tokenizer = guest("tokenizer").display(),
            counter_id = job.counter_id,
            counter = job.counter.display(),
            counter_parallelism = job.counter_parallelism,
            tokenizer_parallelism = job.tokenizer_parallelism,
            source_parallelism = job.source_parallelism,
            sink_parallelism = job.sink_parallelism,
            sink = guest("file_sink").display(),
            attempts = job.restart_attempts,
        );
        if let Some(lines) = &job.hostile {
            let extra = if job.hostile_mounts.is_empty() {
                String::new()
            } else {
                format!(", {}", job.hostile_mounts)
            };
            text.push_str(&format!(
                "\n[[operators]]\nid = \"hostile\"\nrole = \"operator\"\nmodule = \"{}\"\nparallelism = {}\n\
                 mounts = [{{ host = \"scratch\", guest = \"/scratch\", writable = true }}{extra}]\n{lines}\n\n\
                 [[edges]]\nfrom = \"tokenize\"\nto = \"hostile\"\npartition = \"forward\"\n",
                guest("hostile").display(),
                job.tokenizer_parallelism,
            ));
        }
        let path = dir.join("job.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Runs `host ARGS` to completion.
    pub fn host(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("running host")
    }

    /// Runs `host ARGS`, asserting success; returns stdout.
    pub fn host_ok(&self, args: &[&str]) -> String {
        let output = self.host(args);
        assert!(
            output.status.success(),
            "host {args:?} failed ({})\nstdout: {}\nstderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs `host ARGS`, asserting failure; returns stderr.
    pub fn host_err(&self, args: &[&str]) -> String {
        let output = self.host(args);
        assert!(
            !output.status.success(),
            "host {args:?} succeeded but should have failed\nstdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8(output.stderr).unwrap()
    }

    /// Runs `host ARGS`, expects a refusal (exit code 1) whose message contains every one of
    /// `needles`, and checks that nothing in the scratch folder changed: not the state folder
    /// (not even the compiled-module cache), not the input or output, not the job files.
    pub fn refused(&self, args: &[&str], needles: &[&str]) -> String {
        let before = self.snapshot_tree(self.path());
        let output = self.host(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(1),
            "`host {args:?}` should have been refused (exit code 1):\nstdout: {}\nstderr: {stderr}",
            String::from_utf8_lossy(&output.stdout)
        );
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "`host {args:?}`: expected `{needle}` in:\n{stderr}"
            );
        }
        assert_same_tree(
            &before,
            &self.snapshot_tree(self.path()),
            &format!("host {args:?}"),
        );
        stderr
    }

    /// Runs `host ARGS` while job `running` runs, expects a refusal (exit code 1), and checks
    /// that nothing in the state folder changed but that job's own folder, which it writes.
    /// Returns stderr. (The folders the running job writes are checked by its exact output.)
    pub fn refused_beside_running(&self, running: &str, args: &[&str]) -> String {
        let own = self.home().join("jobs").join(running);
        let others = || {
            let mut tree = self.snapshot_tree(&self.home());
            tree.retain(|path, _| !path.starts_with(&own));
            tree
        };
        let before = others();
        let output = self.host(args);
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "`host {args:?}`: {stderr}");
        assert_same_tree(&before, &others(), &format!("host {args:?}"));
        stderr
    }

    /// `host save JOB`; returns the savepoint's id (the first line it prints).
    pub fn save(&self, job: &str) -> String {
        let saved = self.host_ok(&["save", job]);
        saved.lines().next().expect("savepoint id").to_owned()
    }

    /// Runs `job_file` for `run_ms`, then `host stop --save`s it; returns the savepoint's id and
    /// folder once the job has ended.
    pub fn run_then_stop_with_savepoint(&self, job_file: &Path, run_ms: u64) -> (String, PathBuf) {
        let running = self.start(&[job_file.to_str().unwrap()]);
        std::thread::sleep(Duration::from_millis(run_ms));
        let saved = self.host_ok(&["stop", "--save", &running.job]);
        running.wait_ok();
        let mut lines = saved.lines();
        let id = lines.next().expect("savepoint id").to_owned();
        (id, PathBuf::from(lines.next().expect("savepoint folder")))
    }

    /// `host state repartition POINT --max-parallelism MAX --to TO`, which must succeed.
    pub fn repartition(&self, point: &str, max_parallelism: u32, to: &str) -> String {
        let max = max_parallelism.to_string();
        self.host_ok(&[
            "state",
            "repartition",
            point,
            "--max-parallelism",
            &max,
            "--to",
            to,
        ])
    }

    /// `host stop --save` of a running job; returns the savepoint's id once the job ended.
    pub fn save_and_stop(&self, running: RunningJob) -> String {
        let saved = self.host_ok(&["stop", "--save", &running.job]);
        running.wait_ok();
        saved.lines().next().expect("savepoint id").to_owned()
    }

    /// Starts `host run ARGS` in the background and waits for it to print the job id.
    pub fn start(&self, args: &[&str]) -> RunningJob {
        let mut child = self
            .command(&[&["run"], args].concat())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning host run");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let job = line.trim().to_owned();
        if job.is_empty() {
            let output = child.wait_with_output().unwrap();
            panic!(
                "host run {args:?} printed no job id; stderr:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        // Drained as the job runs: a job whose log outgrew the pipe would block on it.
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut text).unwrap();
            text
        });
        RunningJob { child, job, stderr }
    }

    /// Starts `host ARGS` in the background, its output discarded but for its stderr, kept
    /// in a pipe (to read once it has ended: what it writes is short).
    pub fn spawn_host(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning host")
    }

    /// `host ARGS` in the scratch folder, on its state folder, logging warnings only.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_host"));
        command
            .args(args)
            .env("HOST_HOME", self.home())
            .env("HOST_LOG", "host=warn")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.path());
        command
    }

    /// The committed output: every part file of the sink, in checkpoint order.
    pub fn committed_output(&self) -> Vec<String> {
        committed_output_in(self.path())
    }

    /// Every file under `sub` with its state, to show that a refused command changed nothing.
    pub fn snapshot_tree(&self, sub: &Path) -> Tree {
        let mut files = BTreeMap::new();
        let mut stack = vec![sub.to_owned()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_none_or(|e| e != "sock") {
                    files.insert(path.clone(), FileState::of(&path));
                }
            }
        }
        files
    }
}

/// Replaces `from` by `to` in the file at `path`, which must contain it.
pub fn replace_in(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{from} not in {}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

/// Copies the files of folder `from` into `to` (a savepoint is flat).
pub fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A `host run` in the background.
pub struct RunningJob {
    /// The process.
    pub child: Child,
    /// The job id it printed.
    pub job: String,
    /// Reads its stderr to the end.
    stderr: std::thread::JoinHandle<String>,
}

impl RunningJob {
    /// Waits for the job to end; returns whether it succeeded and its stderr.
    pub fn wait(self) -> (bool, String) {
        let (code, stderr) = self.wait_code();
        (code == Some(0), stderr)
    }

    /// Waits for the job to end; returns its exit code (`None` if a signal ended it) and its
    /// stderr.
    pub fn wait_code(self) -> (Option<i32>, String) {
        self.wait_code_within(JOB_WAIT_MAX)
    }

    /// Waits for the job to end; returns how it ended (a signal shows there) and its stderr.
    pub fn wait_status(self) -> (ExitStatus, String) {
        self.wait_status_within(JOB_WAIT_MAX)
    }

    /// Waits for a successful end, panicking with stderr otherwise.
    pub fn wait_ok(self) {
        let job = self.job.clone();
        let (ok, stderr) = self.wait();
        assert!(ok, "job {job} failed:\n{stderr}");
    }

    /// Waits for the job to fail (exit code 3), panicking with stderr otherwise, and for its
    /// stderr to say each of `needles`; returns that stderr.
    pub fn wait_failed(self, needles: &[&str]) -> String {
        let (code, stderr) = self.wait_code();
        assert_eq!(
            code,
            Some(3),
            "exit code 3 (the job failed) expected:\n{stderr}"
        );
        for needle in needles {
            assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
        }
        stderr
    }

    /// `kill -9`.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Like [`RunningJob::wait_code`], but allowing the job `max` rather than the usual limit:
    /// for a job that compiles several Python components cold (each takes tens of seconds).
    pub fn wait_code_within(self, max: Duration) -> (Option<i32>, String) {
        let (status, stderr) = self.wait_status_within(max);
        (status.code(), stderr)
    }

    /// Like [`RunningJob::wait_status`], within `max`.
    fn wait_status_within(mut self, max: Duration) -> (ExitStatus, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.stderr.join().unwrap());
            }
            if started.elapsed() > max {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let stderr = self.stderr.join().unwrap();
                panic!(
                    "job {} did not end within {max:?}; its stderr:\n{stderr}",
                    self.job
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The first line `child` prints on its standard output (piped), trimmed; empty if it ended
/// without printing one (a `host run` that was refused prints no job id).
pub fn first_line(child: &mut Child) -> String {
    let mut line = String::new();
    let stdout = child.stdout.as_mut().expect("stdout piped");
    BufReader::new(stdout).read_line(&mut line).unwrap();
    line.trim().to_owned()
}

/// Waits until `done` holds, checking every 20 ms; panics naming `what` if it does not within
/// `JOB_WAIT_MAX`. (A test waits for the condition it needs, not for a time it guesses.)
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + JOB_WAIT_MAX;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {JOB_WAIT_MAX:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
