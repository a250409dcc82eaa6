//! `host --profile perfmap`: the engine tells `perf` the names of the guests' compiled
//! functions, in `/tmp/perf-<pid>.map`; without it, no map is written.

use std::path::PathBuf;
use std::process::Stdio;

use crate::util::{Dir, WordCount};

#[test]
fn perfmap_names_the_guests_functions_and_nothing_is_written_without_it() {
    let dir = Dir::new(20);
    let job = dir.write_job(&WordCount {
        lines_per_second: 1_000_000,
        ..WordCount::default()
    });
    let job = job.to_str().unwrap();
    for (args, profiled) in [
        (vec!["--profile", "perfmap", "run", job], true),
        (vec!["run", job], false),
    ] {
        let mut child = dir
            .command(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning host");
        let map = PathBuf::from(format!("/tmp/perf-{}.map", child.id()));
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(0), "{args:?}");
        let text = std::fs::read_to_string(&map);
        let _ = std::fs::remove_file(&map);
        match profiled {
            // Each line is `ADDRESS SIZE NAME`; the counter's functions are among them.
            true => {
                let text = text.unwrap_or_else(|e| panic!("{}: {e}", map.display()));
                assert!(
                    text.lines().any(|l| l.contains("wasm[0]::function[")),
                    "{text:.300}"
                );
            }
            false => assert!(text.is_err(), "{} written without --profile", map.display()),
        }
    }
}
