//! Python components (the SDK of `sdk/python/`, the guests of `guest-examples/python/` and
//! `tests/guests/python/`, built by `sdk/python/build.sh` into
//! `<target-dir>/wasm32-wasip2/guest/<name>_py.wasm`) in real jobs: a Python counter counts
//! exactly once, upgrades from v1 to v2 through a savepoint (from a Python or a Rust
//! v1), a Python exception fails the job naming the operator and carrying the exception's text,
//! and a job made only of Python components is exact and compiles nothing on its second start.
//!
//! Compiling a Python component to native code takes tens of seconds (the CPython interpreter
//! is in each); each test's state folder starts with the compiled modules that earlier tests
//! shared (`tests/util.rs`): that a second start compiles nothing is seen in its cache, which a
//! compile would have written to.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::module_cache::{assert_compiled, cache_files};
use crate::util::{Dir, WordCount, assert_exactly_once, guest, input_text, replace_in};

const LINES: usize = 3_000;

/// Longest a job that compiles four Python components cold may take.
const ALL_PYTHON_WAIT_MAX: Duration = Duration::from_secs(420);

/// The Python example component `name` (e.g. `counter_v1`), built by `sdk/python/build.sh`.
fn py(name: &str) -> PathBuf {
    let path = guest("line_source").with_file_name(format!("{name}_py.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `sdk/python/build.sh` first",
        path.display()
    );
    path
}

/// Waits until the job has committed output (it compiles its Python components first).
fn wait_for_commit(dir: &Dir) {
    let started = Instant::now();
    while dir.committed_output().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(110),
            "nothing was committed within 110 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Adds `config` (a TOML inline table) to the operator whose module is `module` in `job`.
fn configure(job: &Path, module: &Path, config: &str) {
    let line = format!("module = \"{}\"\n", module.display());
    replace_in(job, &line, &format!("{line}config = {config}\n"));
}

/// Runs a word count with `from` as the counter, takes a savepoint while it runs, stops it, and
/// resumes it with `to`; checks that the output is exactly once, v1 then v2 lines, and that v2
/// knew which words it migrated.
fn upgrade(from: PathBuf, to: PathBuf) {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        counter: from,
        lines_per_second: 1_000,
        ..WordCount::default()
    });
    let running = dir.start(&[job.to_str().unwrap()]);
    wait_for_commit(&dir);
    let savepoint = dir.save_and_stop(running);
    let before = dir.committed_output().len();
    let words = input_text(LINES).split_whitespace().count();
    assert!(before < words, "the job ended before it was saved");

    let job = dir.write_job(&WordCount {
        counter: to,
        ..WordCount::default()
    });
    dir.start(&[job.to_str().unwrap(), "--from", &savepoint])
        .wait_ok();

    let output = dir.committed_output();
    assert_exactly_once(&output, &input_text(LINES));
    let (v1, v2) = output.split_at(before);
    assert!(
        v1.iter().all(|l| !l.contains("first-seen=")),
        "v2 output before the upgrade"
    );
    assert!(
        v2.iter().all(|l| l.contains(" first-seen=")),
        "v1 output after the upgrade"
    );
    // A word counted before the savepoint kept its count, and v2 knows it was migrated.
    assert!(
        v2.iter().any(|l| l.ends_with(" first-seen=unknown")),
        "no migrated word"
    );
    assert!(
        v2.iter().any(|l| !l.ends_with(" first-seen=unknown")),
        "no word new to v2"
    );
}

#[test]
fn a_python_counter_commits_exactly_once() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        counter: py("counter_v1"),
        ..WordCount::default()
    });
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    let output = dir.committed_output();
    assert_exactly_once(&output, &input_text(LINES));
    assert!(output.iter().all(|l| !l.contains("first-seen")));
}

#[test]
fn a_python_counter_v1_upgrades_to_python_v2_exactly() {
    upgrade(py("counter_v1"), py("counter_v2"));
}

#[test]
fn a_rust_counter_v1_upgrades_to_python_v2_exactly() {
    // Keyed state crosses languages: the portable envelope of docs/state-format.md.
    upgrade(guest("counter_v1"), py("counter_v2"));
}

#[test]
fn a_python_exception_fails_the_job_naming_the_operator() {
    let dir = Dir::new(LINES);
    let failing = py("failing");
    let job = dir.write_job(&WordCount {
        counter: failing.clone(),
        ..WordCount::default()
    });
    configure(
        &job,
        &failing,
        r#"{ fail = "process", after_records = "300" }"#,
    );
    dir.start(&[job.to_str().unwrap()]).wait_failed(&[
        "failed",
        "counter[",
        "`process` refused",
        "ValueError: failing on purpose in process",
    ]);
    let list = dir.host_ok(&["list"]);
    assert!(list.contains("failed: counter["), "{list}");
}

#[test]
fn a_python_exception_in_snapshot_or_restore_names_the_operator() {
    let dir = Dir::new(LINES);
    let failing = py("failing");
    let write_job = |config: &str| {
        let job = dir.write_job(&WordCount {
            counter: failing.clone(),
            lines_per_second: 1_000,
            ..WordCount::default()
        });
        configure(&job, &failing, config);
        job
    };

    // Failing in `snapshot`: the first checkpoint fails the job.
    let job = write_job(r#"{ fail = "snapshot" }"#);
    dir.start(&[job.to_str().unwrap()]).wait_failed(&[
        "counter[",
        "`snapshot` refused",
        "ValueError: failing on purpose in snapshot",
    ]);

    // Failing in `restore`: the start from a savepoint is refused (exit code 1, nothing
    // written), naming each subtask and the exception.
    let job = write_job("{}");
    let running = dir.start(&[job.to_str().unwrap()]);
    wait_for_commit(&dir);
    let savepoint = dir.save_and_stop(running);
    let job = write_job(r#"{ fail = "restore" }"#);
    dir.refused(
        &["run", job.to_str().unwrap(), "--from", &savepoint],
        &[
            "cannot start",
            "counter[0]: `restore` refused: ValueError: failing on purpose in restore",
            "counter[1]: `restore` refused: ValueError: failing on purpose in restore",
        ],
    );
}

#[test]
fn an_all_python_job_is_exact_and_its_second_start_compiles_nothing() {
    let dir = Dir::new(LINES);
    let write_job = |folder: &Path| {
        let job = dir.write_job_in(
            folder,
            &WordCount {
                counter: py("counter_v1"),
                lines_per_second: 1_000_000,
                ..WordCount::default()
            },
        );
        for name in ["line_source", "tokenizer", "file_sink"] {
            let rust = guest(name).display().to_string();
            replace_in(
                &job,
                &format!("\"{rust}\""),
                &format!("\"{}\"", py(name).display()),
            );
        }
        job
    };

    let job = write_job(dir.path());
    // The first start compiles what earlier tests have not (all four, at worst).
    let (code, stderr) = dir
        .start(&[job.to_str().unwrap()])
        .wait_code_within(ALL_PYTHON_WAIT_MAX);
    assert_eq!(code, Some(0), "the job failed:\n{stderr}");
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
    assert_compiled(
        &dir,
        &["line_source", "tokenizer", "counter_v1", "file_sink"].map(py),
    );
    let cached = cache_files(&dir);

    // A second job of the same components on the same state folder loads them all.
    let second = dir.path().join("second");
    let job = write_job(&second);
    let (code, stderr) = dir.start(&[job.to_str().unwrap()]).wait_code();
    assert_eq!(code, Some(0), "the second job failed:\n{stderr}");
    assert_eq!(
        cache_files(&dir),
        cached,
        "the second start changed the compiled-module cache"
    );
    let mut parts: Vec<String> = std::fs::read_dir(second.join("output"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("part-"))
        .collect();
    parts.sort();
    let output: Vec<String> = parts
        .iter()
        .flat_map(|p| {
            std::fs::read_to_string(second.join("output").join(p))
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect();
    assert_exactly_once(&output, &input_text(LINES));
}
