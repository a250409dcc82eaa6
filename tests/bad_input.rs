//! Guarantee 5 and the bad inputs of the vertical slice: each is refused with an error that
//! names the thing at fault, and changes nothing on disk.

use std::path::PathBuf;

use crate::util::{Dir, WordCount, guest, replace_in};

const LINES: usize = 2_000;

/// A state folder holding one savepoint of a v1 word count; returns (dir, savepoint id, job file).
fn with_savepoint() -> (Dir, String, std::path::PathBuf) {
    let dir = Dir::new(LINES);
    // Slow enough (10 s of input) that the stop comes mid-stream on a loaded machine too.
    let job = dir.write_job(&WordCount {
        lines_per_second: 200,
        ..WordCount::default()
    });
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 500);
    (dir, savepoint, job)
}

#[test]
fn a_missing_malformed_or_wrong_world_module_is_refused_naming_the_operator_file_and_problem() {
    let dir = Dir::new(10);
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm this is not a component").unwrap();
    // Each case: the module in the counter's place, and what the refusal must say.
    let cases: [(PathBuf, &[&str]); 3] = [
        (
            dir.path().join("nowhere/counter.wasm"),
            &["nowhere/counter.wasm", "cannot read module"],
        ),
        (bogus, &["bogus.wasm", "not a valid WebAssembly component"]),
        // The sink component lacks `process`, which the operator world requires.
        (
            guest("file_sink"),
            &["file_sink.wasm", "does not implement the `operator` world"],
        ),
    ];
    for (counter, needles) in cases {
        let job = dir.write_job(&WordCount {
            counter,
            ..WordCount::default()
        });
        let stderr = dir.refused(&["run", job.to_str().unwrap()], needles);
        assert!(stderr.contains("operator `counter`"), "{stderr}");
    }
}

#[test]
fn job_files_with_duplicate_or_unknown_ids_or_cycles_are_refused() {
    let dir = Dir::new(10);
    let job = dir.write_job(&WordCount::default());
    replace_in(&job, "id = \"tokenize\"", "id = \"lines\"");
    dir.refused(
        &["run", job.to_str().unwrap()],
        &[
            "`lines` is used more than once",
            "unknown operator `tokenize`",
        ],
    );

    let job = dir.write_job(&WordCount::default());
    std::fs::write(
        &job,
        std::fs::read_to_string(&job).unwrap()
            + "\n[[edges]]\nfrom = \"counter\"\nto = \"tokenize\"\npartition = \"rebalance\"\n",
    )
    .unwrap();
    dir.refused(&["run", job.to_str().unwrap()], &["cycle"]);
}

#[test]
fn a_restore_point_that_does_not_exist_is_refused() {
    let dir = Dir::new(10);
    let job = dir.write_job(&WordCount::default());
    dir.refused(
        &["run", job.to_str().unwrap(), "--from", "sp-nothing"],
        &["no savepoint, job or folder `sp-nothing`"],
    );
    dir.refused(
        &["run", job.to_str().unwrap(), "--from", "./nowhere"],
        &["no savepoint, job or folder `./nowhere`"],
    );
}

#[test]
fn corrupt_or_truncated_savepoints_are_refused_before_any_state_is_used() {
    let (dir, savepoint, job) = with_savepoint();
    let folder = dir.home().join("savepoints").join(&savepoint);
    let state = folder.join("counter-1.state");
    let original = std::fs::read(&state).unwrap();

    let mut flipped = original.clone();
    flipped[original.len() / 2] ^= 0x10;
    std::fs::write(&state, &flipped).unwrap();
    dir.refused(
        &["run", job.to_str().unwrap(), "--from", &savepoint],
        &["counter-1.state", "checksum mismatch"],
    );

    std::fs::write(&state, &original[..original.len() - 1]).unwrap();
    dir.refused(
        &["run", job.to_str().unwrap(), "--from", &savepoint],
        &["counter-1.state", "metadata says"],
    );
    dir.refused(&["inspect", &savepoint], &["counter-1.state"]);

    std::fs::write(&state, &original).unwrap();
    let metadata = folder.join("_metadata");
    let mut bytes = std::fs::read(&metadata).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&metadata, &bytes).unwrap();
    dir.refused(
        &["run", job.to_str().unwrap(), "--from", &savepoint],
        &["_metadata", "checksum mismatch"],
    );
}

#[test]
fn state_for_an_operator_missing_from_the_job_is_refused_unless_allowed() {
    let (dir, savepoint, _) = with_savepoint();
    let renamed = dir.write_job(&WordCount {
        counter_id: "count-words",
        ..WordCount::default()
    });
    dir.refused(
        &["run", renamed.to_str().unwrap(), "--from", &savepoint],
        &[
            "operator `counter` has state in the savepoint but is not in the job",
            "--allow-non-restored-state",
        ],
    );
    let output = dir.host_ok(&[
        "check",
        renamed.to_str().unwrap(),
        "--from",
        &savepoint,
        "--allow-non-restored-state",
    ]);
    assert!(output.starts_with("ok:"), "{output}");
}

#[test]
fn a_parallelism_change_of_a_module_that_does_not_rescale_its_state_is_refused() {
    // The hostile operator keeps a count as operator state and says `rescale: refuse`.
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        hostile: Some("config = { misbehave = \"none\" }".to_owned()),
        ..WordCount::default()
    });
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 500);
    // Tokenizer and hostile (joined by a forward edge) to 3: the stateless tokenizer would
    // rescale, the hostile operator cannot.
    let job = dir.write_job(&WordCount {
        hostile: Some("config = { misbehave = \"none\" }".to_owned()),
        tokenizer_parallelism: 3,
        ..WordCount::default()
    });
    for command in ["run", "check"] {
        dir.refused(
            &[command, job.to_str().unwrap(), "--from", &savepoint],
            &[
                "operator `hostile`",
                "cannot move from parallelism 2 to 3",
                "rescale: refuse",
            ],
        );
    }
}

#[test]
fn a_module_whose_restore_refuses_the_state_is_named_and_the_savepoint_is_untouched() {
    let (dir, savepoint, _) = with_savepoint();
    // Upgrade to v2 and save again: the v2 state cannot be read by a v1 module.
    let v2 = dir.write_job(&WordCount {
        counter: guest("counter_v2"),
        lines_per_second: 200,
        ..WordCount::default()
    });
    let running = dir.start(&[v2.to_str().unwrap(), "--from", &savepoint]);
    let v2_savepoint = dir
        .host_ok(&["stop", "--save", &running.job])
        .lines()
        .next()
        .unwrap()
        .to_owned();
    running.wait_ok();
    let v1 = dir.write_job(&WordCount::default());
    dir.refused(
        &["run", v1.to_str().unwrap(), "--from", &v2_savepoint],
        &[
            "operator `counter` (subtask 0)",
            "`restore` refused",
            "version 2",
        ],
    );
    dir.refused(
        &["check", v1.to_str().unwrap(), "--from", &v2_savepoint],
        &["`restore` refused"],
    );
}

#[test]
fn save_on_a_job_that_is_not_running_says_so() {
    let (dir, _, _) = with_savepoint();
    let job = dir
        .host_ok(&["list"])
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    dir.refused(
        &["save", &job],
        &[&format!(
            "job `{job}` is not running (stopped with savepoint"
        )],
    );
    dir.refused(&["save", "job-nosuchjob"], &["no job `job-nosuchjob`"]);
}
