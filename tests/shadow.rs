//! `host shadow`: the old and the new job run from one point on the same input, by the real
//! host with the real counters; identical modules agree, a counter that counts wrong differs
//! at a key it names, bad input is refused with exit status 2, and no run changes a file.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::util::{Dir, WordCount, assert_same_tree, guest, wait_until};

const LINES: usize = 1_500;

/// A word count whose savepoint lies mid-stream: the folder, its job file and the savepoint.
fn point_mid_stream() -> (Dir, PathBuf, String) {
    let dir = Dir::new(LINES);
    let file = dir.write_job(&WordCount::default());
    let running = dir.start(&[file.to_str().unwrap()]);
    wait_until("output committed", || dir.committed_output().len() > 50);
    let point = dir.save_and_stop(running);
    (dir, file, point)
}

/// A copy of `file` with the counter's module replaced by `counter`.
pub fn job_with_counter(file: &Path, counter: &str) -> PathBuf {
    let text = std::fs::read_to_string(file).unwrap();
    let v1 = guest("counter_v1");
    let v1 = v1.to_str().unwrap();
    assert!(text.contains(v1));
    let copy = file.with_file_name(format!("job-{counter}.toml"));
    std::fs::write(&copy, text.replace(v1, guest(counter).to_str().unwrap())).unwrap();
    copy
}

/// Runs `host ARGS`, checking that it changed no file of the scratch folder (state folder,
/// point, compiled-module cache, input, output, job files); returns its exit status and
/// output.
fn shadow(dir: &Dir, args: &[&str]) -> (Option<i32>, String, String) {
    let before = dir.snapshot_tree(dir.path());
    let output = dir.host(&[&["shadow"], args].concat());
    assert_same_tree(&before, &dir.snapshot_tree(dir.path()), "host shadow");
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn identical_jobs_agree_and_change_nothing() {
    let (dir, file, point) = point_mid_stream();
    let file = file.to_str().unwrap();
    let (code, out, err) = shadow(&dir, &["--from", &point, file, file]);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.trim_end().ends_with("no difference"), "{out}");
    assert!(out.contains("sink `sink`: "), "{out}");
    assert!(out.contains("state `counter`: "), "{out}");

    // Bounded: each source subtask reads exactly that many records, in both runs.
    let args = ["--from", &point, file, file, "--records", "40", "--json"];
    let (code, out, err) = shadow(&dir, &args);
    assert_eq!(code, Some(0), "stdout:\n{out}\nstderr:\n{err}");
    let report: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(report["agrees"], true);
    let read = &report["input"][0];
    assert_eq!(
        (&read["subtask"], &read["old"], &read["new"]),
        (&"lines[0]".into(), &40.into(), &40.into())
    );
    let sink = &report["sinks"][0];
    assert!(
        sink["old_records"].as_u64().unwrap() > 40,
        "40 lines hold more words: {sink}"
    );
    assert_eq!(sink["old_records"], sink["new_records"]);
}

#[test]
fn a_counter_that_counts_wrong_differs_at_a_key_it_names() {
    let (dir, file, point) = point_mid_stream();
    let wrong = job_with_counter(&file, "counter_v3_wrong");
    let (old, new) = (file.to_str().unwrap(), wrong.to_str().unwrap());
    let (code, out, err) = shadow(&dir, &["--from", &point, old, new]);
    assert_eq!(code, Some(1), "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.trim_end().ends_with("the jobs differ"), "{out}");
    assert!(out.contains("keys differ"), "{out}");

    let (code, out, _) = shadow(&dir, &["--json", "--from", &point, old, new]);
    assert_eq!(code, Some(1));
    let report: Json = serde_json::from_str(&out).unwrap();
    assert_eq!(report["agrees"], false);
    let sink = &report["sinks"][0];
    assert_eq!(sink["operator"], "sink");
    // The same words, counted differently: as many records, other values.
    assert_eq!(sink["old_records"], sink["new_records"]);
    let first = &sink["first"][0];
    let key = first["key"].as_str().unwrap();
    let (was, is) = (
        first["old"]["value"].as_str().unwrap(),
        first["new"]["value"].as_str().unwrap(),
    );
    assert!(
        was.starts_with(&format!("{key} ")) && is.starts_with(&format!("{key} ")),
        "{first}"
    );
    assert_ne!(was, is);
    // The state after the run: the wrong counter holds more for each word it saw.
    let state = &report["states"][0];
    assert_eq!(state["operator"], "counter");
    assert!(state["keys_differing"].as_u64().unwrap() > 0, "{state}");
    let value = &state["first"][0];
    assert!(
        value["new"].as_u64().unwrap() > value["old"].as_u64().unwrap(),
        "{value}"
    );
}

#[test]
fn bad_input_is_refused_with_status_2_naming_what_is_at_fault() {
    let (dir, file, point) = point_mid_stream();
    let job = file.to_str().unwrap();
    let (code, _, err) = shadow(&dir, &["--from", "sp-nothing-here", job, job]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("sp-nothing-here"), "{err}");

    // A job whose counter has another id: the point's `counter` state has no operator.
    let other = dir.path().join("other");
    let renamed = WordCount {
        counter_id: "tally",
        ..WordCount::default()
    };
    let other = dir.write_job_in(&other, &renamed);
    let (code, _, err) = shadow(&dir, &["--from", &point, job, other.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("`counter`"), "{err}");

    // A source reading a server is refused, named.
    let nats = file.with_file_name("job-nats.toml");
    let text = std::fs::read_to_string(&file).unwrap();
    let source = format!("module = \"{}\"", guest("line_source").display());
    assert!(text.contains(&source));
    let text = text
        .replace(&source, "connector = \"nats\"")
        .replace(
            "config = { path = \"/input/words.txt\" }\nmounts = [{ host = \"input\", guest = \"/input\" }]",
            "config = { url = \"nats://127.0.0.1:9\", stream = \"words\" }",
        );
    std::fs::write(&nats, text).unwrap();
    let (code, _, err) = shadow(&dir, &["--from", &point, job, nats.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("operator `lines`") && err.contains("nats"),
        "{err}"
    );
}
