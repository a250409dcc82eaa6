//! `host compile`: components compiled ahead of a run, into the state folder's compiled-module
//! cache, so that the first job to use them does not wait for the compiler.

use crate::util::{Dir, WordCount, guest};

/// The compiled modules in the state folder's cache (`.cwasm` files with their records).
fn cached(dir: &Dir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.home().join("cache"))
        .map(|entries| {
            let names = entries.map(|e| e.unwrap().file_name().into_string().unwrap());
            names.collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn compiled_ahead_a_module_is_not_compiled_again_by_a_run() {
    // At the default log level, which says what a start waits for.
    let dir = Dir::cold(200).with_env(&[("HOST_LOG".into(), "host=info".into())]);
    let (tokenizer, counter) = (guest("tokenizer"), guest("counter_v1"));
    let modules = [tokenizer.to_str().unwrap(), counter.to_str().unwrap()];

    let first = dir.host_ok(&[&["compile"][..], &modules].concat());
    assert_eq!(first.matches("compiled in ").count(), 2, "{first}");
    let files = cached(&dir);
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".cwasm")).count(),
        2,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".cwasm.hmac")).count(),
        2,
        "{files:?}"
    );

    let again = dir.host_ok(&[&["compile"][..], &modules].concat());
    assert_eq!(again.matches(": already compiled").count(), 2, "{again}");
    assert_eq!(cached(&dir), files, "nothing compiled the second time");

    // The run compiles the source and the sink, which `compile` was not given, and says so;
    // the two compiled ahead come from the cache.
    let job = dir.write_job(&WordCount::default());
    let (ok, stderr) = dir.start(&[job.to_str().unwrap()]).wait();
    assert!(ok, "{stderr}");
    let compiling: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("compiling "))
        .collect();
    assert_eq!(compiling.len(), 2, "{stderr}");
    assert!(
        compiling
            .iter()
            .all(|l| !l.contains("tokenizer") && !l.contains("counter")),
        "{stderr}"
    );
}

#[test]
fn a_file_that_is_no_component_is_refused_by_name() {
    let dir = Dir::cold(10);
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"not wasm").unwrap();
    let output = dir.host(&["compile", bogus.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bogus.wasm: not a valid WebAssembly component"),
        "{stderr}"
    );
    assert!(
        cached(&dir).iter().all(|f| !f.ends_with(".cwasm")),
        "{:?}",
        cached(&dir)
    );
}
