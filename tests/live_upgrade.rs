//! `host upgrade`: one operator's module swapped while the job runs, at a checkpoint, with a
//! canary window. Whatever happens to the new module (it restores and runs, its `restore`
//! fails, it refuses or traps catching up, it traps on probation), the committed output is
//! exactly that of an uninterrupted run.

use std::time::Duration;

use crate::util::{
    Dir, RunningJob, WordCount, assert_exactly_once, assert_v1_then_v2, guest, input_text,
};

const LINES: usize = 3_000;

/// A word count with the `hostile` pass-through operator behaving, throttled so that the
/// upgrade lands mid-stream.
fn with_hostile() -> WordCount {
    WordCount {
        hostile: Some("config = { misbehave = \"none\" }".to_owned()),
        ..WordCount::default()
    }
}

/// `host upgrade` of `running`'s operator `operator` to `module` with `extra` arguments, once
/// the job has run a while.
fn upgrade(
    dir: &Dir,
    running: &RunningJob,
    operator: &str,
    module: &str,
    extra: &[&str],
) -> std::process::Output {
    std::thread::sleep(Duration::from_millis(600));
    let args = [
        &[
            "upgrade",
            &running.job,
            "--operator",
            operator,
            "--module",
            module,
        ],
        extra,
    ];
    dir.host(&args.concat())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_live_upgrade_from_v1_to_v2_mid_stream_gives_the_uninterrupted_output() {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount::default());
    // Staged from one checkpoint, v2 catches up at the next: the stall makes sure that records
    // reach v1 in between, so that the output is exact only if v2 took in what they changed.
    let running = dir.start(&[job.to_str().unwrap(), "--stall-at", "swap-staged:300"]);
    let v2 = guest("counter_v2");
    let canary = ["--canary-records", "200", "--canary-ms", "100"];
    let upgraded = upgrade(&dir, &running, "counter", v2.to_str().unwrap(), &canary);
    let (stdout, stderr) = (text(&upgraded.stdout), text(&upgraded.stderr));
    assert_eq!(upgraded.status.code(), Some(0), "{stdout}\n{stderr}");
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or_default();
    assert!(
        first.starts_with("upgraded operator `counter` to word-counter 2.0.0 at checkpoint "),
        "{stdout}"
    );
    // counter-v2, built with the SDK, catches up: restored beside v1, then given what changed,
    // in the background at one checkpoint at least (the stall made staging slow) and at the
    // swap's.
    let how = lines.next().unwrap_or_default();
    assert!(
        how.starts_with("restored beside the running module from checkpoint "),
        "{stdout}"
    );
    let rounds = how
        .split_once(" at ")
        .and_then(|(_, n)| n.strip_suffix(" checkpoints")?.parse::<u32>().ok());
    assert!(rounds.is_some_and(|n| n >= 2), "{stdout}");
    let pause = lines.next().unwrap_or_default();
    let ms = pause
        .strip_prefix("pause: ")
        .and_then(|p| p.strip_suffix(" ms"));
    assert!(ms.is_some_and(|ms| ms.parse::<f64>().is_ok()), "{stdout}");

    // The next savepoint carries the new module.
    let savepoint = dir.save(&running.job);
    let inspected = dir.host_ok(&["--json", "inspect", &savepoint]);
    let point: serde_json::Value = serde_json::from_str(&inspected).unwrap();
    let counter = point["operators"]
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["id"] == "counter")
        .unwrap();
    assert_eq!(counter["module_name"], "word-counter", "{inspected}");
    assert_eq!(counter["module_version"], "2.0.0", "{inspected}");
    let v2 = counter["module_sha256"].as_str().unwrap().to_owned();

    running.wait_ok();
    // ... kept in the module store: the point checks without its job file, v2 named by hash.
    let checked = dir.host_ok(&["check", "--from", &savepoint]);
    assert!(checked.contains("word-counter 2.0.0"), "{checked}");
    assert!(
        dir.home()
            .join("modules")
            .join(format!("{v2}.wasm"))
            .is_file()
    );
    let output = dir.committed_output();
    assert_exactly_once(&output, &input_text(LINES));
    assert_v1_then_v2(&output);
}

/// After a live swap, the host's copy of the new module's state is the full snapshot it took
/// beside the old module at staging: so the first snapshot after the swap must carry what
/// every catch-up changed. A job stopped with a savepoint then resumes from it exactly, with the
/// program the point records (v2, without a job file).
#[test]
fn a_job_stopped_after_a_live_upgrade_resumes_from_its_savepoint_exactly() {
    let dir = Dir::new(LINES);
    // 6 s of input: the stop comes mid-stream.
    let job = dir.write_job(&WordCount {
        lines_per_second: 500,
        ..WordCount::default()
    });
    let running = dir.start(&[job.to_str().unwrap(), "--stall-at", "swap-staged:300"]);
    let v2 = guest("counter_v2");
    let canary = ["--canary-records", "200", "--canary-ms", "100"];
    let upgraded = upgrade(&dir, &running, "counter", v2.to_str().unwrap(), &canary);
    assert_eq!(
        upgraded.status.code(),
        Some(0),
        "{}",
        text(&upgraded.stderr)
    );
    let savepoint = dir.save_and_stop(running);
    dir.start(&["--from", &savepoint]).wait_ok();
    let output = dir.committed_output();
    assert_exactly_once(&output, &input_text(LINES));
    assert_v1_then_v2(&output);
}

/// Upgrades the `hostile` operator of a running word count to `hostile` with `args`, expects
/// the upgrade to fail with every one of `needles` and the job to run on with the old module,
/// logging `logged`, to the exact output.
fn upgrade_fails_and_the_job_runs_on(args: &[&str], needles: &[&str], logged: &str) {
    let dir = Dir::new(LINES);
    // No restarts allowed: a rollback is not one.
    let job = dir.write_job(&with_hostile());
    let running = dir.start(&[job.to_str().unwrap()]);
    let hostile = guest("hostile");
    let upgraded = upgrade(&dir, &running, "hostile", hostile.to_str().unwrap(), args);
    let stderr = text(&upgraded.stderr);
    assert_eq!(upgraded.status.code(), Some(1), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "expected `{needle}` in:\n{stderr}");
    }
    let (ok, log) = running.wait();
    assert!(ok, "the job should run on with the old module:\n{log}");
    assert!(log.contains("WARN") && log.contains(logged), "{log}");
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn a_new_module_whose_restore_fails_leaves_the_old_one_running() {
    upgrade_fails_and_the_job_runs_on(
        &["--config", "misbehave=refuse-restore"],
        &[
            "operator `hostile`: the new module failed to restore checkpoint ",
            "the old module runs on",
            "hostile: refusing to restore as configured",
        ],
        "upgrade failed, the old module runs on",
    );
}

#[test]
fn a_new_module_that_refuses_the_changes_at_the_swap_leaves_the_old_one_running() {
    upgrade_fails_and_the_job_runs_on(
        &["--config", "misbehave=refuse-changes"],
        &[
            "operator `hostile`: the new module failed to restore checkpoint ",
            "the old module runs on",
            "`restore-changes` refused: hostile: refusing the changes as configured",
        ],
        "upgrade failed, the old module runs on",
    );
}

#[test]
fn a_new_module_that_traps_catching_up_leaves_the_old_one_running() {
    upgrade_fails_and_the_job_runs_on(
        &["--config", "misbehave=trap-in-changes"],
        &[
            "operator `hostile`: the new module failed to restore checkpoint ",
            "the old module runs on",
            "`restore-changes` trapped",
        ],
        "upgrade failed, the old module runs on",
    );
}

#[test]
fn a_new_module_that_traps_in_its_canary_window_is_rolled_back() {
    upgrade_fails_and_the_job_runs_on(
        &[
            "--config",
            "misbehave=trap",
            "--config",
            "after_records=1",
            "--canary-records",
            "1000000",
        ],
        &[
            "operator `hostile`: rolled back to the old module from checkpoint ",
            "the job failed within the canary window",
            "`process` trapped",
        ],
        "rolled back to the old module",
    );
}

#[test]
fn refused_upgrades_change_nothing() {
    let dir = Dir::new(LINES);
    // Slow enough to outlast every refusal (each compares the state folder before and after,
    // which takes seconds on a loaded machine); stopped with a savepoint after them, and
    // resumed at full speed.
    let job = dir.write_job(&WordCount {
        lines_per_second: 50,
        ..WordCount::default()
    });
    let running = dir.start(&[job.to_str().unwrap()]);
    std::thread::sleep(Duration::from_millis(300));
    std::fs::write(dir.path().join("not-a-component.wasm"), "hello").unwrap();
    let (v2, sink) = (guest("counter_v2"), guest("null_sink"));
    let (v2, sink) = (v2.to_str().unwrap(), sink.to_str().unwrap());
    let id = running.job.clone();
    let refusals: [(&[&str], &str); 4] = [
        (
            &["--operator", "nope", "--module", v2],
            "the job has no operator `nope`",
        ),
        (
            &["--operator", "lines", "--module", v2],
            "operator `lines` is a source: only operators (role `operator`) are swapped live",
        ),
        (
            &["--operator", "counter", "--module", "not-a-component.wasm"],
            "not-a-component.wasm: not a valid WebAssembly component",
        ),
        (
            &["--operator", "counter", "--module", sink],
            "does not implement the `operator` world",
        ),
    ];
    for (args, needle) in refusals {
        let args = [&["upgrade", id.as_str()], args].concat();
        let stderr = dir.refused_beside_running(&id, &args);
        assert!(
            stderr.contains(&format!("job `{id}`: ")) && stderr.contains(needle),
            "`host {args:?}`: expected `{needle}` in:\n{stderr}"
        );
    }
    let savepoint = dir.save_and_stop(running);
    let fast = dir.write_job(&WordCount {
        lines_per_second: 1_000_000,
        ..WordCount::default()
    });
    dir.start(&[fast.to_str().unwrap(), "--from", &savepoint])
        .wait_ok();
    let output = dir.committed_output();
    assert_exactly_once(&output, &input_text(LINES));
    assert!(
        !output.iter().any(|l| l.contains("first-seen=")),
        "a refused upgrade changed the counter"
    );
}
