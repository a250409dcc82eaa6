//! Topology changes across a savepoint: an operator renamed (`--rename OLD=NEW`, its state
//! follows it), refused without the rename, and reported by `check`.

use crate::util::{Dir, WordCount, assert_exactly_once, input_text};

const LINES: usize = 1_600;

#[test]
fn a_renamed_counter_takes_its_state_with_rename_and_is_refused_without() {
    let dir = Dir::new(LINES);
    let throttled = WordCount {
        lines_per_second: 600,
        ..WordCount::default()
    };
    let before = dir.write_job(&throttled);
    let running = dir.start(&[before.to_str().unwrap()]);
    std::thread::sleep(std::time::Duration::from_millis(900));
    let point = dir.save_and_stop(running);
    let renamed = dir.write_job(&WordCount {
        counter_id: "counts",
        lines_per_second: 4_000,
        ..WordCount::default()
    });
    let renamed = renamed.to_str().unwrap();
    // Without the rename, the counter's state has no operator: refused, nothing changed.
    dir.refused(
        &["run", renamed, "--from", &point],
        &["operator `counter` has state", "--rename counter=NEW_ID"],
    );
    dir.refused(
        &[
            "run",
            renamed,
            "--from",
            &point,
            "--rename",
            "lines=counter",
        ],
        &["--rename lines=counter: the savepoint already has state for an operator `counter`"],
    );
    dir.refused(
        &["run", renamed, "--from", &point, "--rename", "nope=counts"],
        &["--rename nope=counts: the savepoint has no operator `nope`"],
    );
    let check = dir.host_ok(&[
        "check",
        renamed,
        "--from",
        &point,
        "--rename",
        "counter=counts",
    ]);
    assert!(
        check.contains("counts") && check.contains("(renamed from `counter`)"),
        "{check}"
    );
    dir.start(&[renamed, "--from", &point, "--rename", "counter=counts"])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}
