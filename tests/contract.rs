//! The contract's previous version still runs: a component built against
//! `jobhost:operator@0.3.1` (importing `types@0.3.1`, exporting `catch-up@0.3.1`) links into a
//! host of 0.3.2, passes records through exactly once, and is swapped live by catching up,
//! which the host finds under 0.3.2's name (0.3.x is one semver track).

use crate::util::{Dir, WordCount, assert_exactly_once, guest, input_text, replace_in};

const LINES: usize = 2_000;

#[test]
fn a_component_of_contract_0_3_1_links_runs_and_catches_up() {
    let dir = Dir::new(LINES);
    let old = guest("contract_0_3_1");
    let wasm = std::fs::read(&old).unwrap();
    let imports = |name: &[u8]| wasm.windows(name.len()).any(|w| w == name);
    assert!(
        imports(b"jobhost:operator/types@0.3.1"),
        "built against 0.3.1"
    );
    assert!(!imports(b"@0.3.2"), "nothing of 0.3.2 in it");
    // Between the tokenizer and the counter, where the word count puts its pass-through.
    let job = dir.write_job(&WordCount {
        hostile: Some(String::new()),
        lines_per_second: 500,
        ..WordCount::default()
    });
    let (hostile, old) = (guest("hostile"), old.display().to_string());
    replace_in(&job, &hostile.display().to_string(), &old);
    let running = dir.start(&[job.to_str().unwrap()]);
    crate::util::wait_until("output committed", || !dir.committed_output().is_empty());
    let upgraded = dir.host_ok(&[
        "upgrade",
        &running.job,
        "--operator",
        "hostile",
        "--module",
        &old,
        "--canary-records",
        "100",
        "--canary-ms",
        "100",
    ]);
    assert!(
        upgraded.contains("to contract-0-3-1 1.0.0")
            && upgraded.contains("restored beside the running module"),
        "swapped live by catching up:\n{upgraded}"
    );
    running.wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}
