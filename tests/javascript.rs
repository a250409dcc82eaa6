//! Operators written in JavaScript (`guest-js/`, built by `guest-js/build.sh` into
//! `<name>_js.wasm`) run like Rust ones: a word count with the JS tokenizer and counter is exact,
//! a JS counter upgrades through a savepoint, a JS exception fails its job naming the operator
//! and carrying the exception, and a restarted job compiles none of its components again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::util::{Dir, WordCount, assert_exactly_once, guest, input_text, replace_in};

const LINES: usize = 2_000;

/// Writes the word count of `job` with the JavaScript tokenizer in place of the Rust one.
fn write_js_job(dir: &Dir, job: &WordCount) -> PathBuf {
    let path = dir.write_job(job);
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
    let dir = Dir::new(LINES);
    let job = write_js_job(
        &dir,
        &WordCount {
            counter: guest("counter_v1_js"),
            lines_per_second: 1_000_000,
            ..WordCount::default()
        },
    );
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn a_js_counter_saved_then_upgraded_to_v2_gives_the_uninterrupted_output() {
    let dir = Dir::new(LINES);
    let job = write_js_job(
        &dir,
        &WordCount {
            counter: guest("counter_v1_js"),
            ..WordCount::default()
        },
    );
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 1_000);
    assert!(
        !dir.committed_output().is_empty(),
        "nothing was committed before the savepoint"
    );

    let job = write_js_job(
        &dir,
        &WordCount {
            counter: guest("counter_v2_js"),
            ..WordCount::default()
        },
    );
    dir.start(&[job.to_str().unwrap(), "--from", &savepoint])
        .wait_ok();
    assert_upgraded_exactly(&dir);
}

/// State crosses languages: a Rust counter v1's savepoint resumes with the JS counter v2.
#[test]
fn a_rust_counter_saved_then_upgraded_to_the_js_v2_gives_the_uninterrupted_output() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 1_000);

    let job = write_js_job(
        &dir,
        &WordCount {
            counter: guest("counter_v2_js"),
            ..WordCount::default()
        },
    );
    dir.start(&[job.to_str().unwrap(), "--from", &savepoint])
        .wait_ok();
    assert_upgraded_exactly(&dir);
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
        "v1 then v2 output expected"
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
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        hostile: Some("config = { throw_in = \"process\", after_records = 300 }".to_owned()),
        lines_per_second: 4_000,
        ..WordCount::default()
    });
    swap_module(&job, "hostile", "faulty_js");
    let output = dir.host(&["run", job.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    for needle in [
        "hostile[",
        "`process`",
        "TypeError: faulty operator hostile[",
        "threw in process on purpose",
    ] {
        assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
    }
    assert!(dir.host_ok(&["list"]).contains("failed: hostile["));
}

#[test]
fn a_js_sink_runs_a_job_to_its_end() {
    let dir = Dir::new(LINES);
    let job = write_js_job(
        &dir,
        &WordCount {
            counter: guest("counter_v1_js"),
            lines_per_second: 1_000_000,
            ..WordCount::default()
        },
    );
    swap_module(&job, "file_sink", "null_sink_js");
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    assert!(dir.host_ok(&["list"]).contains("finished"));
    assert!(dir.committed_output().is_empty(), "the null sink wrote files");
}

/// Each file of the compiled-module cache with its length and modification time.
fn cache_files(dir: &Dir) -> BTreeMap<String, (u64, SystemTime)> {
    std::fs::read_dir(dir.home().join("cache"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                (metadata.len(), metadata.modified().unwrap()),
            )
        })
        .collect()
}

#[test]
fn a_second_start_of_a_js_job_compiles_nothing() {
    let dir = Dir::new(200);
    let job = write_js_job(
        &dir,
        &WordCount {
            counter: guest("counter_v1_js"),
            lines_per_second: 1_000_000,
            ..WordCount::default()
        },
    );
    let started = Instant::now();
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    let cold = started.elapsed();
    let first = cache_files(&dir);
    // line_source, tokenizer_js, counter_v1_js, file_sink: one compiled module each.
    let compiled: Vec<_> = first.keys().filter(|n| n.ends_with(".cwasm")).collect();
    assert_eq!(compiled.len(), 4, "{first:?}");

    // Let a recompilation show in the modification times, then run the same job again.
    std::thread::sleep(Duration::from_millis(50));
    std::fs::remove_dir_all(dir.path().join("output")).unwrap();
    std::fs::create_dir(dir.path().join("output")).unwrap();
    let started = Instant::now();
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    let warm = started.elapsed();
    assert_eq!(cache_files(&dir), first, "the second start changed the cache");
    assert_exactly_once(&dir.committed_output(), &input_text(200));
    eprintln!("JS word count of 200 lines: first run {cold:?} (compiling), second {warm:?}");
}
