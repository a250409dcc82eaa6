//! Operators written in JavaScript (`sdk/js/`, `guest-examples/js/`, `tests/guests/js/`, built
//! by `sdk/js/build.sh` into `<name>_js.wasm`) run like Rust ones: a word count with the JS tokenizer and counter is exact,
//! a JS counter upgrades through a savepoint (and so does a Rust one, to the JS v2: state
//! crosses languages, through a savepoint and live), a JS exception fails its job naming the operator and carrying the
//! exception, and a restarted job compiles none of its components again.
//!
//! A componentize-js component embeds the SpiderMonkey engine (12 MiB), which takes wasmtime
//! tens of seconds to compile. So that each test does not pay for it, the tests start from the
//! shared compiled-module cache, warmed once (`warm_cache`): that a restarted job compiles
//! nothing is seen in its cache, which a compile would have written to.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::module_cache::{assert_compiled, cache_files, holds_module, shared_cache};
use crate::util::{
    Dir, WordCount, assert_exactly_once, guest, input_text, line_source_table, replace_in,
};

const LINES: usize = 2_000;

/// Every JavaScript component these tests run.
const JS_MODULES: [&str; 5] = [
    "tokenizer_js",
    "counter_v1_js",
    "counter_v2_js",
    "faulty_js",
    "null_sink_js",
];

/// A job of the line source and the JS null sink, with JS operator `operator` between them
/// (over a `key-by` edge, which keyed ones need) if given: each compiles one new module into a
/// cache that holds the others, well within the time a test gives a job.
fn warm_up_job(operator: Option<&str>) -> String {
    let module = |name| guest(name).display().to_string();
    let mut text = format!(
        r#"
name = "warm-up"
{source}
[[operators]]
id = "sink"
role = "sink"
module = "{sink}"
"#,
        source = line_source_table(),
        sink = module("null_sink_js"),
    );
    match operator {
        None => {
            text.push_str("\n[[edges]]\nfrom = \"lines\"\nto = \"sink\"\npartition = \"forward\"\n")
        }
        Some(name) => text.push_str(&format!(
            "\n[[operators]]\nid = \"op\"\nrole = \"operator\"\nmodule = \"{}\"\n\n\
             [[edges]]\nfrom = \"lines\"\nto = \"op\"\npartition = \"key-by\"\n\n\
             [[edges]]\nfrom = \"op\"\nto = \"sink\"\npartition = \"forward\"\n",
            module(name)
        )),
    }
    text
}

/// Makes sure the compiled-module cache the tests share (`tests/util.rs`) holds every
/// JavaScript component as built now, by running the `warm_up_job`s once if it does not.
fn warm_cache() {
    static WARM: OnceLock<()> = OnceLock::new();
    WARM.get_or_init(|| {
        let cached = |name: &str| holds_module(&shared_cache(), &guest(name));
        if !JS_MODULES.iter().all(|name| cached(name)) {
            // Its cache goes to the shared one when it is dropped.
            let dir = Dir::new(20);
            let job = dir.path().join("warm-up.toml");
            let operators = JS_MODULES.iter().filter(|&&name| name != "null_sink_js");
            for operator in [None].into_iter().chain(operators.map(Some)) {
                std::fs::write(&job, warm_up_job(operator.copied())).unwrap();
                dir.start(&[job.to_str().unwrap()]).wait_ok();
            }
        }
    });
}

/// A scratch folder whose state folder already holds every JS component compiled.
fn warm_dir(lines: usize) -> Dir {
    warm_cache();
    Dir::new(lines)
}

/// Writes the word count of JavaScript counter `counter` with the JavaScript tokenizer, its
/// source reading `lines_per_second`.
fn js_word_count(dir: &Dir, counter: &str, lines_per_second: u64) -> PathBuf {
    let path = dir.write_job(&WordCount {
        counter: guest(counter),
        lines_per_second,
        ..WordCount::default()
    });
    swap_module(&path, "tokenizer", "tokenizer_js");
    path
}

/// Replaces component `from` by component `to` in the job file at `path`.
fn swap_module(path: &Path, from: &str, to: &str) {
    replace_in(
        path,
        &format!("\"{}\"", guest(from).display()),
        &format!("\"{}\"", guest(to).display()),
    );
}

#[test]
fn a_js_word_count_counts_every_word_exactly_once() {
    let dir = warm_dir(LINES);
    let job = js_word_count(&dir, "counter_v1_js", 1_000_000);
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn a_js_counter_saved_then_upgraded_to_v2_gives_the_uninterrupted_output() {
    let dir = warm_dir(LINES);
    // Slower than the Rust tests' 1 500 lines a second: the JS pipeline takes in the whole input
    // at that rate before the savepoint's barrier gets through it.
    let job = js_word_count(&dir, "counter_v1_js", 500);
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 1_000);
    assert!(
        !dir.committed_output().is_empty(),
        "nothing was committed before the savepoint"
    );
    resume_with_the_js_v2(&dir, &savepoint);
}

/// State crosses languages: a Rust counter v1's savepoint resumes with the JS counter v2.
#[test]
fn a_rust_counter_saved_then_upgraded_to_the_js_v2_gives_the_uninterrupted_output() {
    let dir = warm_dir(LINES);
    // Slow enough (4 s of input) that the stop comes mid-stream on a loaded machine too.
    let job = dir.write_job(&WordCount {
        lines_per_second: 500,
        ..WordCount::default()
    });
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 1_000);
    resume_with_the_js_v2(&dir, &savepoint);
}

/// A JavaScript module does not export `catch-up` (the JS SDK builds the `operator` world):
/// swapped in live, it is restored at the swap's checkpoint while the operator waits, and the
/// output is exact all the same.
#[test]
fn a_rust_counter_upgraded_live_to_the_js_v2_gives_the_uninterrupted_output() {
    let dir = warm_dir(LINES);
    let job = dir.write_job(&WordCount {
        lines_per_second: 500,
        ..WordCount::default()
    });
    let running = dir.start(&[job.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(600));
    let v2 = guest("counter_v2_js");
    let upgraded = dir.host(&[
        "upgrade",
        &running.job,
        "--operator",
        "counter",
        "--module",
        v2.to_str().unwrap(),
        "--canary-records",
        "200",
    ]);
    let stdout = String::from_utf8_lossy(&upgraded.stdout);
    let stderr = String::from_utf8_lossy(&upgraded.stderr);
    assert_eq!(upgraded.status.code(), Some(0), "{stdout}\n{stderr}");
    let how = "restored at that checkpoint while the operator waited";
    assert!(stdout.contains(how), "{stdout}");
    running.wait_ok();
    assert_upgraded_exactly(&dir);
}

/// Resumes `savepoint` of a word count with the JS counter v2; asserts that it ends and that the
/// output is exact.
fn resume_with_the_js_v2(dir: &Dir, savepoint: &str) {
    let job = js_word_count(dir, "counter_v2_js", WordCount::default().lines_per_second);
    dir.start(&[job.to_str().unwrap(), "--from", savepoint])
        .wait_ok();
    assert_upgraded_exactly(dir);
}

/// The output is exact, v1 lines then v2 lines, and v2 knows which words it migrated.
fn assert_upgraded_exactly(dir: &Dir) {
    let output = dir.committed_output();
    assert_exactly_once(&output, &input_text(LINES));
    let upgraded: Vec<_> = output
        .iter()
        .filter(|l| l.contains(" first-seen="))
        .collect();
    assert!(
        !upgraded.is_empty() && upgraded.len() < output.len(),
        "v1 then v2 output expected: {} of {} lines are v2",
        upgraded.len(),
        output.len()
    );
    assert!(
        upgraded.iter().any(|l| l.ends_with(" first-seen=unknown")),
        "no migrated word"
    );
    assert!(
        upgraded.iter().any(|l| !l.ends_with(" first-seen=unknown")),
        "no word new to v2"
    );
}

#[test]
fn a_js_exception_in_process_fails_the_job_naming_the_operator_and_the_exception() {
    let dir = warm_dir(LINES);
    let job = dir.write_job(&WordCount {
        hostile: Some("config = { throw_in = \"process\", after_records = 300 }".to_owned()),
        lines_per_second: 4_000,
        ..WordCount::default()
    });
    swap_module(&job, "hostile", "faulty_js");
    dir.start(&[job.to_str().unwrap()]).wait_failed(&[
        "hostile[",
        "`process`",
        "TypeError: faulty operator hostile[",
        "threw in process on purpose",
    ]);
    assert!(dir.host_ok(&["list"]).contains("failed: hostile["));
}

#[test]
fn a_js_sink_runs_a_job_to_its_end() {
    let dir = warm_dir(LINES);
    let job = js_word_count(&dir, "counter_v1_js", 1_000_000);
    swap_module(&job, "file_sink", "null_sink_js");
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    assert!(dir.host_ok(&["list"]).contains("finished"));
    assert!(
        dir.committed_output().is_empty(),
        "the null sink wrote files"
    );
}

#[test]
fn a_second_start_of_a_js_job_compiles_nothing() {
    let dir = warm_dir(200);
    let job = js_word_count(&dir, "counter_v1_js", 1_000_000);
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    assert_compiled(
        &dir,
        &["line_source", "tokenizer_js", "counter_v1_js", "file_sink"].map(guest),
    );
    let first = cache_files(&dir);

    // Let a recompilation show in the modification times, then run the same job again.
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_dir_all(dir.path().join("output")).unwrap();
    std::fs::create_dir(dir.path().join("output")).unwrap();
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    assert_eq!(
        cache_files(&dir),
        first,
        "the second start changed the cache"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(200));
}
