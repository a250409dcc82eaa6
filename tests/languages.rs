//! State and records crossing languages: a pipeline of Rust, Python and JavaScript operators
//! commits what the all-Rust one does, and a counter's state moves Rust -> Python ->
//! JavaScript -> Rust across savepoints with no count lost or repeated.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::util::{Dir, WordCount, assert_exactly_once, guest, input_text};

const LINES: usize = 1_500;

/// A word count whose tokenizer and counter are the given components, reading this many
/// lines a second.
fn word_count(dir: &Dir, tokenizer: &str, counter: &str, rate: u64) -> std::path::PathBuf {
    let job = dir.write_job(&WordCount {
        counter: guest(counter),
        lines_per_second: rate,
        ..WordCount::default()
    });
    let text = std::fs::read_to_string(&job).unwrap();
    let rust = guest("tokenizer").display().to_string();
    let other = guest(tokenizer).display().to_string();
    std::fs::write(&job, text.replace(&rust, &other)).unwrap();
    job
}

#[test]
fn a_rust_python_javascript_pipeline_commits_what_the_all_rust_one_does() {
    let committed = |tokenizer: &str, counter: &str| {
        let dir = Dir::new(LINES);
        let job = word_count(&dir, tokenizer, counter, 600);
        dir.start(&[job.to_str().unwrap()]).wait_ok();
        let output = dir.committed_output();
        assert_exactly_once(&output, &input_text(LINES));
        output.into_iter().collect::<BTreeSet<_>>()
    };
    let rust = committed("tokenizer", "counter_v1");
    assert_eq!(committed("tokenizer_py", "counter_v1_js"), rust);
}

#[test]
fn a_count_moves_from_rust_to_python_to_javascript_to_rust_exactly() {
    let dir = Dir::new(LINES);
    let mut from: Option<String> = None;
    for counter in ["counter_v1", "counter_v2_py", "counter_v2_js"] {
        // Slow: still running when it is stopped, however loaded the machine.
        let job = word_count(&dir, "tokenizer", counter, 100);
        let mut args = vec![job.to_str().unwrap().to_owned()];
        if let Some(point) = &from {
            args.extend(["--from".to_owned(), point.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let running = dir.start(&args);
        // Until this counter has committed something of its own, then a savepoint mid-stream.
        let before = dir.committed_output().len();
        let deadline = std::time::Instant::now() + Duration::from_secs(240);
        while dir.committed_output().len() <= before + 50 {
            assert!(
                std::time::Instant::now() < deadline,
                "{counter} committed nothing"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        from = Some(dir.save_and_stop(running));
    }
    let job = word_count(&dir, "tokenizer", "counter_v2", 4_000);
    dir.start(&[job.to_str().unwrap(), "--from", from.as_deref().unwrap()])
        .wait_ok();
    let output = dir.committed_output();
    // Every count exactly once, whichever language wrote it.
    let counts: Vec<String> = output
        .iter()
        .map(|line| line.split(" first-seen=").next().unwrap().to_owned())
        .collect();
    assert_exactly_once(&counts, &input_text(LINES));
    // v2 in every language knew which words v1 (Rust) had counted before it.
    assert!(
        output.iter().any(|l| l.ends_with("first-seen=unknown")),
        "no migrated word"
    );
    assert!(
        output
            .iter()
            .any(|l| l.contains("first-seen=") && !l.ends_with("unknown"))
    );
}
