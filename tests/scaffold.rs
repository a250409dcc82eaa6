//! `host new`: a project written outside the workspace builds, passes its own test as
//! generated, and its component runs in a job.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::util::{Dir, file_sink_table, line_source_table, target_dir};

/// Lines of input of the jobs: a Python or JavaScript component reads them one batch at a time.
const LINES: usize = 200;

/// Runs `cargo ARGS` in `dir` with its own target folder, as its author would (without the
/// lint wrapper the README's test command compiles the host with); panics with its output on
/// failure.
fn cargo(dir: &Path, args: &[&str]) {
    let output = Command::new(env!("CARGO"))
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir().join("scaffold"))
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
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
    let dir = Dir::new(LINES);
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
    run_upper_casing_job(&dir, &component);
}

/// Runs `line source -> component (over key-by) -> file sink` on `dir`'s input; asserts that it
/// commits every line upper-cased, in order, and exits with 0.
fn run_upper_casing_job(dir: &Dir, component: &Path) {
    let job = dir.path().join("job.toml");
    std::fs::write(
        &job,
        format!(
            r#"{source}
[[operators]]
id = "shout"
role = "operator"
module = "{component}"
{sink}
[[edges]]
from = "lines"
to = "shout"
partition = "key-by"

[[edges]]
from = "shout"
to = "sink"
partition = "forward"
"#,
            source = line_source_table(),
            component = component.display(),
            sink = file_sink_table(),
        ),
    )
    .unwrap();
    let (code, stderr) = dir.start(&[job.to_str().unwrap()]).wait_code();
    assert_eq!(code, Some(0), "the job failed:\n{stderr}");
    forget_compiled(dir, component);
    let expected: Vec<String> = std::fs::read_to_string(dir.path().join("input/words.txt"))
        .unwrap()
        .lines()
        .map(str::to_ascii_uppercase)
        .collect();
    assert_eq!(dir.committed_output(), expected);
}

/// Removes `component`'s compiled module from `dir`'s cache, so that it is not shared with the
/// other tests (`tests/module_cache.rs`): a component built in a temporary folder is built
/// again, different, by the next run.
fn forget_compiled(dir: &Dir, component: &Path) {
    let sha256 = hex::encode(Sha256::digest(std::fs::read(component).unwrap()));
    for entry in std::fs::read_dir(dir.home().join("cache")).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(&sha256)
        {
            std::fs::remove_file(&path).unwrap();
        }
    }
}

/// The toolchains a Python or JavaScript project's scripts reuse rather than install: the
/// job host's own, installed by `sdk/python/build.sh` and `sdk/js/build.sh` from the same
/// lock files that `host new` copies.
fn toolchains() -> [(&'static str, PathBuf); 2] {
    let venv = target_dir().join("venv-python-guests");
    let node_modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/js/node_modules");
    for path in [&venv, &node_modules] {
        assert!(
            path.is_dir(),
            "{} is missing: run `just guests` (or `./dev test`) first",
            path.display()
        );
    }
    [
        ("JOBHOST_PYTHON_VENV", venv),
        ("JOBHOST_NODE_MODULES", node_modules),
    ]
}

/// Runs the project's script `name` (`test.sh`, `build.sh`); returns its exit code and output.
fn script(project: &Path, name: &str) -> (Option<i32>, String) {
    let output = Command::new(project.join(name))
        .current_dir(project)
        .envs(toolchains())
        .output()
        .unwrap_or_else(|e| panic!("running {name} of {}: {e}", project.display()));
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.code(), text)
}

/// Runs the project's script `name`, asserting exit code 0; returns its output.
fn script_ok(project: &Path, name: &str) -> String {
    let (code, output) = script(project, name);
    assert_eq!(
        code,
        Some(0),
        "{name} of {} failed:\n{output}",
        project.display()
    );
    output
}

/// What the unit tests of a project print when one test passed, by language.
fn passed(lang: &str) -> &'static [&'static str] {
    match lang {
        "python" => &["Ran 1 test", "OK"],
        _ => &["# pass 1", "# fail 0"],
    }
}

/// `host new --lang LANG shout`: its unit test passes as generated and fails when the operator
/// stops upper-casing; its component, built by its own script, upper-cases every line in a job.
fn a_new_operator_tests_builds_and_runs_in_a_job(lang: &str, module: &str, upper: &str) {
    let dir = Dir::new(LINES);
    let created = dir.host_ok(&["new", "--lang", lang, "shout"]);
    assert!(created.starts_with("created shout"), "{created}");
    let project = dir.path().join("shout");

    let tested = script_ok(&project, "test.sh");
    for needle in passed(lang) {
        assert!(tested.contains(needle), "`{needle}` not in:\n{tested}");
    }
    let built = script_ok(&project, "build.sh");
    assert!(built.contains("built shout.wasm"), "{built}");
    run_upper_casing_job(&dir, &project.join("shout.wasm"));

    // The test guards the behaviour: an operator that no longer upper-cases fails it.
    crate::util::replace_in(&project.join(module), upper, "");
    let (code, output) = script(&project, "test.sh");
    assert_eq!(code, Some(1), "test.sh passed a broken operator:\n{output}");
}

#[test]
fn a_new_python_operator_tests_builds_and_runs_in_a_job() {
    a_new_operator_tests_builds_and_runs_in_a_job("python", "shout.py", ".upper()");
}

#[test]
fn a_new_javascript_operator_tests_builds_and_runs_in_a_job() {
    a_new_operator_tests_builds_and_runs_in_a_job("js", "shout.js", ".toUpperCase()");
}

#[test]
fn new_python_and_javascript_sources_and_sinks_pass_their_own_tests() {
    let dir = Dir::cold(0);
    for lang in ["python", "js"] {
        for role in ["source", "sink"] {
            let name = format!("{lang}-{role}");
            dir.host_ok(&["new", "--lang", lang, "--role", role, &name]);
            let tested = script_ok(&dir.path().join(&name), "test.sh");
            for needle in passed(lang) {
                assert!(
                    tested.contains(needle),
                    "{name}: `{needle}` not in:\n{tested}"
                );
            }
        }
    }
    // A name whose Python module would shadow the standard library's is refused.
    dir.refused(
        &["new", "--lang", "python", "operator"],
        &["`operator` cannot name a python project"],
    );
}
