//! Rescaling from a savepoint: keyed state follows its key groups to the new subtasks, the line
//! source's position splits and merges, the file sink's transactions are reconciled by exactly
//! one new subtask each; the committed output stays exact through every change.

use crate::util::{Dir, WordCount, assert_exactly_once, guest, input_text, wait_until};

const LINES: usize = 2_400;

/// A word count at these parallelisms, throttled so that each step stops mid-stream, however
/// loaded the machine (each source subtask reads at most 100 lines a second: a step of about a
/// second reads a few hundred of the 2 400).
fn job(counter: u32, others: u32, counter_module: &str) -> WordCount {
    WordCount {
        counter: guest(counter_module),
        counter_parallelism: counter,
        tokenizer_parallelism: others,
        source_parallelism: others,
        sink_parallelism: others,
        lines_per_second: 100,
        ..WordCount::default()
    }
}

/// Waits until the job running in `dir` has committed output past the first `lines` lines:
/// each step stops mid-stream, having run (and checkpointed) at its parallelism.
fn wait_for_output_past(dir: &Dir, lines: usize) {
    wait_until("output committed by this step", || {
        dir.committed_output().len() > lines
    });
}

#[test]
fn a_keyed_count_rescales_from_2_to_3_to_1_and_back_to_2_exactly() {
    let dir = Dir::new(LINES);
    let mut from: Option<String> = None;
    for (counter, others) in [(2, 2), (3, 3), (1, 1)] {
        let file = dir.write_job(&job(counter, others, "counter_v1"));
        let mut args = vec![file.to_str().unwrap().to_owned()];
        if let Some(point) = &from {
            let check = dir.host_ok(&["check", &args[0], "--from", point]);
            assert!(check.starts_with("ok:"), "{check}");
            assert!(
                check.contains("counter: parallelism"),
                "no remapping reported:\n{check}"
            );
            args.extend(["--from".to_owned(), point.clone()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let committed = dir.committed_output().len();
        let running = dir.start(&args);
        wait_for_output_past(&dir, committed);
        from = Some(dir.save_and_stop(running));
    }
    let last = dir.write_job(&WordCount {
        lines_per_second: 4_000,
        ..job(2, 2, "counter_v1")
    });
    let last = last.to_str().unwrap();
    dir.start(&[last, "--from", from.as_deref().unwrap()])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn an_upgrade_combined_with_a_parallelism_change_is_exact() {
    let dir = Dir::new(LINES);
    let v1 = dir.write_job(&job(2, 2, "counter_v1"));
    let running = dir.start(&[v1.to_str().unwrap()]);
    wait_for_output_past(&dir, 0);
    let point = dir.save_and_stop(running);
    let v2 = dir.write_job(&WordCount {
        lines_per_second: 4_000,
        ..job(3, 1, "counter_v2")
    });
    let check = dir.host_ok(&["check", v2.to_str().unwrap(), "--from", &point]);
    assert!(check.contains("word-counter 2.0.0"), "{check}");
    assert!(check.contains("counter: parallelism 2 -> 3"), "{check}");
    dir.start(&[v2.to_str().unwrap(), "--from", &point])
        .wait_ok();
    // v2 writes `word count first-seen=...`: the count is what must be exact.
    let counts: Vec<String> = dir
        .committed_output()
        .iter()
        .map(|line| line.split(" first-seen=").next().unwrap().to_owned())
        .collect();
    assert_exactly_once(&counts, &input_text(LINES));
}
