use super::*;
use jobhost_guest::{Batch, records};

/// Subtask `subtask` of `parallelism` reading `path`.
fn source(path: &std::path::Path, subtask: u32, parallelism: u32) -> LineSource {
    let config = vec![("path".to_owned(), path.display().to_string())];
    let ctx = Context {
        operator_id: "lines".to_owned(),
        subtask,
        parallelism,
        max_parallelism: 128,
        key_group_start: 0,
        key_group_end: 0,
        config,
    };
    LineSource::init(&ctx).unwrap()
}

/// Polls `max_records`: the timestamps (line numbers) read, or `None` at the end.
fn poll(source: &mut LineSource, max_records: u32) -> Option<Vec<i64>> {
    let mut output = BatchBuilder::new();
    let more = source.poll(max_records, &mut output).unwrap();
    let batch: Batch = output.into();
    let read: Vec<i64> = records(&batch).unwrap().map(|r| r.timestamp).collect();
    (more || !read.is_empty()).then_some(read)
}

fn from(parallelism: u32, states: Vec<Vec<u8>>) -> Restore {
    let origin = jobhost_guest::StateOrigin {
        module_name: "line-source".to_owned(),
        module_version: "1.1.0".to_owned(),
        module_sha256: String::new(),
    };
    Restore {
        parallelism,
        states,
        origin,
    }
}

fn file(name: &str, lines: usize) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("line-source-{name}-{}", std::process::id()));
    let text: String = (0..lines).map(|n| format!("line {n}\n")).collect();
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn reads_its_share_of_lines_and_resumes() {
    let path = std::env::temp_dir().join(format!("line-source-test-{}", std::process::id()));
    std::fs::write(&path, "zero\none\r\n\nthree\nfour\nfive").unwrap();
    let mut odd = source(&path, 1, 2);
    assert_eq!(poll(&mut odd, 10), Some(vec![1, 3, 5]));
    assert_eq!(poll(&mut odd, 10), None);

    let mut even = source(&path, 0, 2);
    assert_eq!(poll(&mut even, 1), Some(vec![0]));
    let state = even.snapshot(1).unwrap();
    assert_eq!(poll(&mut even, 2), Some(vec![2, 4]));
    let mut resumed = source(&path, 0, 2);
    resumed.restore(from(2, vec![state])).unwrap();
    assert_eq!(poll(&mut resumed, 5), Some(vec![2, 4]));
    assert_eq!(poll(&mut resumed, 5), None);

    let beyond = encode_state(
        1,
        &Position {
            offset: 1000,
            line: 0,
        },
    )
    .unwrap();
    let error = format!(
        "cannot resume `{}` at byte 1000: the file has only 26 bytes (was it changed?)",
        path.display()
    );
    assert_eq!(resumed.restore(from(2, vec![beyond])), Err(error));
    std::fs::remove_file(&path).unwrap();
}

/// Runs subtasks of `parallelism` for `polls` polls of `batch` lines each, from `states`
/// (every old subtask's); returns the lines they emitted and their states.
fn run(
    path: &std::path::Path,
    parallelism: u32,
    states: &[Vec<u8>],
    polls: usize,
) -> (Vec<i64>, Vec<Vec<u8>>) {
    let mut emitted = Vec::new();
    let mut after = Vec::new();
    for subtask in 0..parallelism {
        let mut s = source(path, subtask, parallelism);
        let old = states.len() as u32;
        // As the host hands them over: its own at the same parallelism, else every one.
        let given = match old == parallelism {
            true => vec![states[subtask as usize].clone()],
            false => states.to_vec(),
        };
        s.restore(from(old, given)).unwrap();
        for i in 0..polls {
            emitted.extend(poll(&mut s, 1 + (subtask as u32 + i as u32) % 3).unwrap_or_default());
        }
        after.push(s.snapshot(1).unwrap());
    }
    (emitted, after)
}

#[test]
fn rescaled_subtasks_emit_every_line_exactly_once() {
    let path = file("rescale", 200);
    let mut emitted = Vec::new();
    let mut states: Vec<Vec<u8>> = Vec::new();
    // 2 -> 3 -> 1 -> 2, stopping at uneven positions, then to the end.
    for (parallelism, polls) in [(2, 5), (3, 4), (1, 3), (2, 200)] {
        let (lines, after) = run(&path, parallelism, &states, polls);
        emitted.extend(lines);
        states = after;
    }
    emitted.sort_unstable();
    assert_eq!(emitted, (0..200).collect::<Vec<i64>>());
    std::fs::remove_file(&path).unwrap();
}
