//! `host new`: a project written outside the workspace builds, passes its own test as
//! generated, and its component runs in a job.

use std::path::Path;
use std::process::Command;

use crate::util::{Dir, guest, target_dir};

/// Runs `cargo ARGS` in `dir` with its own target folder; panics with its output on failure.
fn cargo(dir: &Path, args: &[&str]) {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir().join("scaffold"))
        .output()
        .expect("running cargo");
    assert!(
        output.status.success(),
        "cargo {args:?} failed in {}:\n{}",
        dir.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_new_rust_operator_builds_tests_and_runs_in_a_job() {
    let dir = Dir::new(200);
    let created = dir.host_ok(&["new", "shout"]);
    assert!(created.starts_with("created shout"), "{created}");
    let project = dir.path().join("shout");
    dir.refused(&["new", "shout"], &["shout already exists"]);

    cargo(&project, &["test", "--offline"]);
    // The dev profile: what the README's release build adds (optimization, LTO) takes minutes
    // of CI and proves nothing more about the project.
    cargo(
        &project,
        &["build", "--offline", "--target", "wasm32-wasip2"],
    );
    let component = target_dir().join("scaffold/wasm32-wasip2/debug/shout.wasm");
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"
[[operators]]
id = "lines"
role = "source"
module = "{source}"
config = {{ path = "/input/words.txt" }}
mounts = [{{ host = "input", guest = "/input" }}]

[[operators]]
id = "shout"
role = "operator"
module = "{component}"

[[operators]]
id = "sink"
role = "sink"
module = "{sink}"
config = {{ dir = "/output" }}
mounts = [{{ host = "output", guest = "/output", writable = true }}]

[[edges]]
from = "lines"
to = "shout"
partition = "key-by"

[[edges]]
from = "shout"
to = "sink"
partition = "forward"
"#,
            source = guest("line_source").display(),
            component = component.display(),
            sink = guest("file_sink").display(),
        ),
    )
    .unwrap();
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    let expected: Vec<String> = std::fs::read_to_string(dir.path().join("input/words.txt"))
        .unwrap()
        .lines()
        .map(str::to_ascii_uppercase)
        .collect();
    assert_eq!(dir.committed_output(), expected);
}
