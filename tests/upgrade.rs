//! Savepoints that carry their code: the module store, `run --from POINT` without a job file
//! (the rollback after a bad upgrade), `export`, lineage (`savepoints --tree`), `rm` and `gc`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::module_cache::share_into;
use crate::util::{
    Dir, WordCount, assert_exactly_once, guest, input_text, replace_in, word_counts,
};

const LINES: usize = 3_000;

/// The SHA-256 of a component file, as points name it.
pub fn sha256_of(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The modules in the state folder's module store, by file name.
fn stored_modules(dir: &Dir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.home().join("modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// The word-count job with every component copied into `<scratch>/components`, so that the
/// test can delete them.
pub fn job_with_own_components(dir: &Dir) -> PathBuf {
    let job = dir.write_job(&WordCount::default());
    let own = dir.path().join("components");
    std::fs::create_dir_all(&own).unwrap();
    for name in ["line_source", "tokenizer", "counter_v1", "file_sink"] {
        std::fs::copy(guest(name), own.join(format!("{name}.wasm"))).unwrap();
    }
    let built = guest("counter_v1").parent().unwrap().display().to_string();
    replace_in(&job, &built, &own.display().to_string());
    job
}

#[test]
fn a_rollback_without_a_job_file_runs_the_program_that_wrote_the_point() {
    let dir = Dir::new(LINES);
    let v1 = dir.write_job(&WordCount::default());
    let (before_upgrade, _) = dir.run_then_stop_with_savepoint(&v1, 600);

    // The upgrade to v3, which restores v1's state and then counts every word twice (slowly
    // enough that the savepoint below is taken while it runs, even on a loaded machine).
    let v3 = dir.write_job(&WordCount {
        counter: guest("counter_v3_wrong"),
        lines_per_second: 500,
        ..WordCount::default()
    });
    let upgraded = dir.start(&[v3.to_str().unwrap(), "--from", &before_upgrade]);
    let upgraded_job = upgraded.job.clone();
    std::thread::sleep(Duration::from_millis(300));
    let during_upgrade = dir.save(&upgraded.job);
    upgraded.wait_ok();
    let expected = word_counts(&input_text(LINES));
    let overcounted = dir.committed_output().iter().any(|line| {
        let (word, count) = line.split_once(' ').unwrap();
        count.parse::<u64>().unwrap() > expected[word]
    });
    assert!(overcounted, "v3 was to write wrong counts");

    // Roll back: the job file is gone; the point names its program.
    std::fs::remove_file(&v1).unwrap();
    let checked = dir.host_ok(&["check", "--from", &before_upgrade]);
    assert!(checked.starts_with("ok: the job would resume"), "{checked}");
    let rollback = dir.start(&["--from", &before_upgrade]);
    let rollback_job = rollback.job.clone();
    rollback.wait_ok();
    let output = dir.committed_output();
    assert_exactly_once(&output, &input_text(LINES));
    assert!(
        output.iter().all(|l| !l.contains("first-seen")),
        "only v1 wrote"
    );

    // Lineage, in the points' own metadata: the upgrade's savepoint says where its job started.
    let inspected = dir.host_ok(&["inspect", &during_upgrade]);
    assert!(
        inspected.contains(&format!("resumed from {}:", job_of(&before_upgrade)))
            && inspected.contains(&format!("({before_upgrade})"))
            && inspected.contains("job definition recorded"),
        "{inspected}"
    );
    // Lineage: both jobs hang under the savepoint they started from, each with its program.
    let v1_counter = &sha256_of(&guest("counter_v1"))[..8];
    let v3_counter = &sha256_of(&guest("counter_v3_wrong"))[..8];
    let tree = dir.host_ok(&["savepoints", "--tree"]);
    let line_of = |needle: &str| {
        let found = tree.lines().position(|l| l.contains(needle));
        found.unwrap_or_else(|| panic!("`{needle}` not in the tree:\n{tree}"))
    };
    let (sp1, sp2) = (line_of(&before_upgrade), line_of(&during_upgrade));
    let (v3_job, rollback_line) = (line_of(&upgraded_job), line_of(&rollback_job));
    assert!(sp1 < v3_job && v3_job < sp2, "{tree}");
    assert!(sp1 < rollback_line, "{tree}");
    let lines: Vec<&str> = tree.lines().collect();
    assert!(
        lines[0].contains(&format!("counter={v1_counter}")),
        "{tree}"
    );
    for (line, counter) in [(v3_job, v3_counter), (rollback_line, v1_counter)] {
        assert!(
            lines[line].contains(&format!("counter={counter}")),
            "{tree}"
        );
        // Indented: it hangs under the savepoint, not at the root.
        assert!(!lines[line].starts_with("job-"), "{tree}");
    }
}

/// The job id a savepoint id names (`sp-<job>-<n>-<suffix>`).
fn job_of(savepoint: &str) -> String {
    let rest = savepoint.strip_prefix("sp-").unwrap();
    let parts: Vec<&str> = rest.rsplitn(3, '-').collect();
    parts[2].to_owned()
}

#[test]
fn an_export_resumes_in_a_fresh_state_folder_without_the_modules_or_the_job_file() {
    let dir = Dir::new(LINES);
    let job = job_with_own_components(&dir);
    let (savepoint, folder) = dir.run_then_stop_with_savepoint(&job, 600);
    let source_before = dir.snapshot_tree(&folder);
    let exported = dir.path().join("exported");
    let printed = dir.host_ok(&["export", &savepoint, exported.to_str().unwrap()]);
    assert!(printed.contains("4 module(s)"), "{printed}");
    assert_eq!(
        source_before,
        dir.snapshot_tree(&folder),
        "export changed its point"
    );
    // Into a folder that holds anything: refused, nothing changed.
    dir.refused(
        &["export", &savepoint, exported.to_str().unwrap()],
        &["exists and is not an empty folder"],
    );

    // The component files, the job file and the state folder gone.
    std::fs::remove_dir_all(dir.path().join("components")).unwrap();
    std::fs::remove_file(&job).unwrap();
    std::fs::remove_dir_all(dir.home()).unwrap();
    share_into(&dir.home());
    // Received from elsewhere, the export grants the folders its job mounts only when told to:
    // refused, with every grant shown, and nothing changed.
    let exported = exported.to_str().unwrap();
    let output = dir.path().join("output");
    let refused = dir.refused(
        &["run", "--from", exported],
        &[
            "--trust-grants",
            &format!("{} as /output, writable", output.display()),
        ],
    );
    assert!(refused.contains("as /input, read-only"), "{refused}");
    dir.start(&["--from", exported, "--trust-grants"]).wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
    // The job put the modules it ran into the fresh state folder's module store.
    assert_eq!(stored_modules(&dir).len(), 4);
}

#[test]
fn gc_keeps_what_a_point_or_a_running_job_names_and_rm_then_collects() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        lines_per_second: 500,
        ..WordCount::default()
    });
    // A module nothing names (a real component, stored by hand under its hash).
    let loose = sha256_of(&guest("counter_v2"));
    std::fs::create_dir_all(dir.home().join("modules")).unwrap();
    std::fs::copy(
        guest("counter_v2"),
        dir.home().join("modules").join(format!("{loose}.wasm")),
    )
    .unwrap();
    let running = dir.start(&[job.to_str().unwrap()]);
    let v1 = sha256_of(&guest("counter_v1"));
    assert!(stored_modules(&dir).contains(&format!("{v1}.wasm")));

    let before = dir.snapshot_tree(&dir.home().join("modules"));
    let dry = dir.host_ok(&["gc", "--dry-run"]);
    assert_eq!(
        dry,
        format!(
            "would remove module {loose}\n1 module(s) to remove, 4 kept (referenced by a point or a running job)\n"
        )
    );
    assert_eq!(
        before,
        dir.snapshot_tree(&dir.home().join("modules")),
        "a dry run changed the store"
    );
    let done = dir.host_ok(&["gc"]);
    assert!(
        done.starts_with(&format!("removed module {loose}\n")),
        "{done}"
    );
    assert_eq!(
        stored_modules(&dir).len(),
        4,
        "the running job's modules stay"
    );
    let savepoint = dir.save_and_stop(running);

    // Upgraded to v2 from the savepoint: v1's counter is named by the savepoint and v1's
    // retained checkpoints only.
    let v2 = dir.write_job(&WordCount {
        counter: guest("counter_v2"),
        lines_per_second: 1_000_000,
        ..WordCount::default()
    });
    dir.start(&[v2.to_str().unwrap(), "--from", &savepoint])
        .wait_ok();
    let kept = dir.host_ok(&["gc"]);
    assert!(kept.starts_with("0 module(s) removed, 5 kept"), "{kept}");

    let first_job = job_of(&savepoint);
    let listed = dir.host_ok(&["savepoints", "--job", &first_job, "--json"]);
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    let checkpoints: Vec<u64> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["savepoint"].is_null())
        .map(|p| p["checkpoint"].as_u64().unwrap())
        .collect();
    for n in checkpoints {
        let removed = dir.host_ok(&["rm", &format!("{first_job}:{n}")]);
        assert!(!removed.contains("removed module"), "{removed}");
    }
    let removed = dir.host_ok(&["rm", &savepoint]);
    assert!(
        removed.contains(&format!("removed module {v1}\n1 module(s) removed, 4 kept")),
        "{removed}"
    );
    assert!(!stored_modules(&dir).contains(&format!("{v1}.wasm")));
    assert!(
        stored_modules(&dir).contains(&format!("{loose}.wasm")),
        "v2 runs it now"
    );
}

#[test]
fn a_tampered_module_is_refused_naming_it_and_the_point() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 400);
    let v1 = sha256_of(&guest("counter_v1"));
    let stored = dir.home().join("modules").join(format!("{v1}.wasm"));
    let mut bytes = std::fs::read(&stored).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&stored, bytes).unwrap();

    for command in ["run", "check"] {
        let stderr = dir.refused(
            &[command, "--from", &savepoint],
            &[
                &format!("module sha256:{v1}"),
                &savepoint,
                "is corrupt",
                "refusing to run it",
            ],
        );
        assert!(stderr.contains(&stored.display().to_string()), "{stderr}");
    }
}

#[test]
fn a_point_from_before_format_4_needs_its_job_file_and_says_so() {
    let dir = Dir::new(LINES);
    let old = dir.path().join("old-point");
    std::fs::create_dir_all(&old).unwrap();
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/v1/_metadata");
    std::fs::copy(golden, old.join("_metadata")).unwrap();
    for command in ["run", "check"] {
        dir.refused(
            &[command, "--from", old.to_str().unwrap()],
            &[
                "was written by a host before metadata format 4",
                "cannot run without a job file",
                &format!("host run JOB.toml --from {}", old.display()),
            ],
        );
    }
    dir.refused(
        &[
            "export",
            old.to_str().unwrap(),
            dir.path().join("e").to_str().unwrap(),
        ],
        &["before metadata format 4"],
    );
}
