//! A job on `host worker` processes (`host run --workers N`): the same output as in one
//! process, through the kill of a worker, through a worker stopped (its connections open)
//! past the heartbeat timeout and resumed, and a savepoint taken on 2 workers resumed on 3 at
//! another parallelism; back-pressure across processes.

use crate::util::{
    Dir, WordCount, assert_exactly_once, guest, input_text, wait_until, word_counts,
};

const LINES: usize = 3_000;

/// The word count with every operator at `parallelism`, each source subtask reading
/// `lines_per_second`, restarted at most twice.
pub fn job(parallelism: u32, lines_per_second: u64) -> WordCount {
    WordCount {
        counter_parallelism: parallelism,
        tokenizer_parallelism: parallelism,
        source_parallelism: parallelism,
        sink_parallelism: parallelism,
        lines_per_second,
        restart_attempts: 2,
        ..WordCount::default()
    }
}

/// The process ids of the workers running on `dir`'s state folder, by name (`worker-2`).
fn workers(dir: &Dir) -> Vec<(u32, String)> {
    let home = dir.home();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|&b| b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        let on_home = args
            .windows(2)
            .any(|w| w[0] == "--home" && w[1] == home.to_str().unwrap());
        let name = args
            .windows(2)
            .find(|w| w[0] == "--name")
            .map(|w| w[1].clone());
        if let (true, true, Some(name)) = (on_home, args.iter().any(|a| a == "worker"), name) {
            found.push((pid, name));
        }
    }
    found.sort_by(|a, b| a.1.cmp(&b.1));
    found
}

/// Kills the worker `name` of `dir`'s job with SIGKILL.
pub fn kill_worker(dir: &Dir, name: &str) {
    signal_worker(dir, name, "KILL");
}

/// Sends `signal` (`KILL`, `STOP`, `CONT`) to the worker `name` of `dir`'s job; its pid.
fn signal_worker(dir: &Dir, name: &str, signal: &str) -> u32 {
    let (pid, _) = workers(dir)
        .into_iter()
        .find(|(_, n)| n == name)
        .unwrap_or_else(|| panic!("{name} runs"));
    let sent = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} {pid}");
    pid
}

/// The committed part files of `dir`'s file sink: (checkpoint, subtask) of each.
fn parts(dir: &Dir) -> Vec<(u64, u32)> {
    let names = std::fs::read_dir(dir.path().join("output")).unwrap();
    let names = names.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    let parsed = names.filter_map(|name| {
        let rest = name.strip_prefix("part-")?.strip_suffix(".txt")?;
        let (checkpoint, subtask) = rest.split_once('-')?;
        Some((checkpoint.parse().ok()?, subtask.parse().ok()?))
    });
    parsed.collect()
}

/// Every file under the file sink's staging folder of `dir`.
fn staged(dir: &Dir) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir.path().join("output/.staging")) else {
        return Vec::new();
    };
    let names = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    sorted(names.collect())
}

/// The word count's output for `input`, as one process commits it: `word n` for every
/// occurrence of each word, sorted.
fn expected_output(input: &str) -> Vec<String> {
    let counts = word_counts(input);
    let lines = counts
        .iter()
        .flat_map(|(word, n)| (1..=*n).map(move |count| format!("{word} {count}")));
    sorted(lines.collect())
}

fn sorted(mut lines: Vec<String>) -> Vec<String> {
    lines.sort();
    lines
}

#[test]
fn the_word_count_at_parallelism_4_over_3_workers_commits_what_one_process_commits() {
    let one = Dir::new(LINES);
    let file = one.write_job(&job(4, 2_000));
    one.start(&[file.to_str().unwrap()]).wait_ok();
    let three = Dir::new(LINES);
    let file = three.write_job(&job(4, 2_000));
    three
        .start(&[file.to_str().unwrap(), "--workers", "3"])
        .wait_ok();
    assert_exactly_once(&three.committed_output(), &input_text(LINES));
    assert_eq!(
        sorted(three.committed_output()),
        sorted(one.committed_output())
    );
    assert!(workers(&three).is_empty(), "workers outlived their job");
}

#[test]
fn kill_9_of_a_worker_mid_run_restarts_the_job_on_the_workers_left_exactly() {
    let dir = Dir::new(LINES);
    let file = dir.write_job(&job(4, 100));
    let running = dir.start(&[file.to_str().unwrap(), "--workers", "3"]);
    // Mid-run: a checkpoint committed, the sources far from done.
    wait_until("output committed", || !dir.committed_output().is_empty());
    let name = "worker-2";
    kill_worker(&dir, name);
    let (ok, stderr) = running.wait();
    assert!(ok, "the job did not survive the kill of {name}:\n{stderr}");
    assert!(
        stderr.contains("restarting from the latest checkpoint"),
        "no restart after the kill of {name}:\n{stderr}"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn kill_9_of_the_coordinator_stops_every_worker_and_run_from_the_job_resumes_it_exactly() {
    let dir = Dir::new(LINES);
    let file = dir.write_job(&job(4, 100));
    let file = file.to_str().unwrap();
    let running = dir.start(&[file, "--workers", "3"]);
    wait_until("output committed", || !dir.committed_output().is_empty());
    assert_eq!(workers(&dir).len(), 3);
    let job = running.job.clone();
    running.kill();
    // They notice their coordinator's connection closed, stop their subtasks, and exit.
    wait_until("every worker gone", || workers(&dir).is_empty());
    dir.start(&[file, "--from", &job, "--workers", "3"])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn a_savepoint_taken_on_2_workers_at_parallelism_2_resumes_on_3_at_parallelism_4() {
    let dir = Dir::new(LINES);
    let two = dir.write_job(&job(2, 100));
    let running = dir.start(&[two.to_str().unwrap(), "--workers", "2"]);
    wait_until("output committed", || !dir.committed_output().is_empty());
    let point = dir.save_and_stop(running);
    let words: u64 = word_counts(&input_text(LINES)).values().sum();
    let committed = dir.committed_output().len() as u64;
    assert!(committed < words, "the job ended before the savepoint");
    let four = dir.write_job(&job(4, 2_000));
    let four = four.to_str().unwrap();
    dir.start(&[four, "--from", &point, "--workers", "3"])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn the_kubernetes_scheduler_without_an_object_store_is_refused_naming_why() {
    let dir = Dir::new(10);
    let file = dir.write_job(&job(1, 100));
    let args = [
        "run",
        file.to_str().unwrap(),
        "--workers",
        "2",
        "--scheduler",
        "kubernetes",
        "--image",
        "registry.example/jobhost:1",
        "--advertise",
        "10.0.0.5",
    ];
    let output = dir.host(&args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the kubernetes scheduler needs --store s3://"),
        "{stderr}"
    );
    assert!(dir.committed_output().is_empty());
}

/// Records the generator of the back-pressure job would emit, were it never held back.
const GENERATED: u64 = 2_000_000;

/// The back-pressure job on 2 workers: the generator (subtask 1 on worker-1) sends every record
/// both to a file sink beside it (forward: subtask 1 on worker-1 too) and to a `hostile`
/// operator at parallelism 1 (on worker-0) that sleeps in its first `process` call for ten
/// minutes, then to a null sink. No checkpoints.
fn back_pressure_job(dir: &Dir) -> std::path::PathBuf {
    let module = |name: &str| guest(name).display().to_string();
    let text = format!(
        r#"checkpoint_interval_ms = 0

[[operators]]
id = "generator"
role = "source"
module = "{generator}"
parallelism = 2
config = {{ records = "{GENERATED}", keys = "1000" }}

[[operators]]
id = "beside"
role = "sink"
module = "{file_sink}"
parallelism = 2
config = {{ dir = "/output" }}
mounts = [{{ host = "output", guest = "/output", writable = true }}]

[[operators]]
id = "slow"
role = "operator"
module = "{hostile}"
parallelism = 1
call_ms_max = 900000
config = {{ misbehave = "sleep", sleep_ms = 600000 }}

[[operators]]
id = "sink"
role = "sink"
module = "{null_sink}"
parallelism = 1

[[edges]]
from = "generator"
to = "beside"
partition = "forward"

[[edges]]
from = "generator"
to = "slow"
partition = "rebalance"

[[edges]]
from = "slow"
to = "sink"
partition = "forward"
"#,
        generator = module("generator"),
        file_sink = module("file_sink"),
        hostile = module("hostile"),
        null_sink = module("null_sink"),
    );
    let path = dir.path().join("back-pressure.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Records the file sink's subtask 1 (on worker-1) was given: one byte each (the generator's
/// values are empty; the sink writes each followed by a newline), but for what its 8 KiB
/// buffer holds.
fn written_beside(dir: &Dir) -> u64 {
    let current = dir.path().join("output/.staging/1.current");
    std::fs::metadata(current).map_or(0, |m| m.len())
}

#[test]
fn a_slow_operator_on_one_worker_holds_back_the_source_on_another_within_its_credit() {
    let dir = Dir::new(0);
    let file = back_pressure_job(&dir);
    let running = dir.start(&[file.to_str().unwrap(), "--workers", "2"]);
    wait_until("the generator on worker-1 ran", || written_beside(&dir) > 0);
    // Until its progress stops: the same size at 25 looks in a row, 100 ms apart.
    let (mut last, mut same) = (written_beside(&dir), 0);
    wait_until("the generator on worker-1 held back", || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        let now = written_beside(&dir);
        same = if now == last { same + 1 } else { 0 };
        last = now;
        same >= 25
    });
    // What may be in flight from generator[1] to the sleeping operator: its local channel into
    // the outbound link, the link's credit window, the inbound link's batch in hand and the
    // operator's local channel (each `CHANNEL_RECORDS_MAX`, 8 Ki records), the operator's own
    // batch and the generator's batch in hand (a poll each, 1 Ki records), and what the file
    // sink's buffer holds back (8 KiB, one byte a record). Without credit, the sockets'
    // buffers alone would take hundreds of thousands.
    let bound = 4 * 8_192 + 3 * 1_024 + 8_192;
    let held_at = written_beside(&dir);
    assert!(
        held_at <= bound,
        "generator[1] on worker-1 emitted {held_at} records while the operator it feeds on \
         worker-0 slept: more than the {bound} its credit allows"
    );
    assert!(held_at < GENERATED / 2);
    assert_eq!(workers(&dir).len(), 2);
    running.kill();
    wait_until("every worker gone", || workers(&dir).is_empty());
}

#[test]
fn a_worker_stopped_past_the_heartbeat_timeout_is_replaced_and_fenced_when_it_comes_back() {
    let dir = Dir::new(LINES);
    // Slow sources (15 s of input), so that the job outlives the stop and the resumption.
    let file = dir.write_job(&WordCount {
        restart_attempts: 5,
        ..job(4, 50)
    });
    let args = [file.to_str().unwrap(), "--workers", "3"];
    let running = dir.start(&[&args[..], &["--heartbeat-timeout-ms", "2000"]].concat());
    wait_until("output committed", || !dir.committed_output().is_empty());
    // SIGSTOP: its process stops, its connections stay open; nothing it holds is committed
    // from now on, but by a successor.
    let name = "worker-2";
    let pid = signal_worker(&dir, name, "STOP");
    let before = parts(&dir).iter().map(|(c, _)| *c).max().unwrap();
    // Every sink subtask (one at least ran on worker-2) committed a later checkpoint: the job
    // noticed the silence and runs on a new generation, on the workers left.
    wait_until("a checkpoint committed without worker-2", || {
        let later = parts(&dir).into_iter().filter(|(c, _)| *c > before);
        let subtasks: std::collections::BTreeSet<u32> = later.map(|(_, s)| s).collect();
        subtasks.len() == 4
    });
    let mut running = running;
    assert!(
        running.child.try_wait().unwrap().is_none(),
        "the job ended before {name} came back"
    );
    signal_worker(&dir, name, "CONT");
    // It comes back to an ended lease: it stops what it ran and ends, on its own.
    wait_until("the resumed worker ended", || {
        workers(&dir).iter().all(|(p, _)| *p != pid)
    });
    let (code, stderr) = running.wait_code();
    assert_eq!(
        code,
        Some(0),
        "the job did not survive {name}'s stop:\n{stderr}"
    );
    let silent = format!("worker {name} (pid {pid}) said nothing for 2000 ms: taken for lost");
    assert!(stderr.contains(&silent), "no `{silent}` in:\n{stderr}");
    assert!(
        stderr.contains("restarting from the latest checkpoint"),
        "no restart after {name} fell silent:\n{stderr}"
    );
    let fenced = "fenced: no word from the coordinator within the lease's 1500 ms";
    assert!(
        stderr.contains(fenced),
        "{name} did not find itself fenced when it came back:\n{stderr}"
    );
    // What is committed is exactly one process's output: nothing the resumed worker wrote
    // late reached it, and nothing of it is left staged.
    assert_eq!(
        sorted(dir.committed_output()),
        expected_output(&input_text(LINES))
    );
    assert_eq!(staged(&dir), Vec::<String>::new(), "left staged");
    assert!(workers(&dir).is_empty(), "workers outlived their job");
}
