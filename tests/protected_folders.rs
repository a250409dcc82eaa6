//! The host's own folders belong to no guest: a job whose mount overlaps the state folder or
//! its compiled-module cache (read-only or writable), or that mounts the job file's folder or a
//! folder holding one of its module files writable, is refused by `host run` and by `host
//! check`, before anything is compiled and with nothing written; and a compiled module in the
//! cache that the host did not write is compiled again, never loaded.

use std::path::{Path, PathBuf};

use crate::module_cache::cached_module;
use crate::util::{Dir, WordCount, assert_exactly_once, guest, input_text, replace_in};

const LINES: usize = 200;

/// The sink's writable mount, as the word count's job file writes it.
const SINK_MOUNT: &str = r#"host = "output", guest = "/output", writable = true"#;

/// A scratch folder with a savepoint of the word count (whose job file is in the scratch
/// folder, beside the state folder `home/`).
fn with_savepoint() -> (Dir, String) {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        lines_per_second: 200,
        ..WordCount::default()
    });
    let (savepoint, _) = dir.run_then_stop_with_savepoint(&job, 300);
    (dir, savepoint)
}

/// The word count's job file in `folder`, its sink's mount's host folder replaced by `host`.
fn job_with_sink_mount(dir: &Dir, folder: &Path, host: &str) -> PathBuf {
    let job = dir.write_job_in(folder, &WordCount::default());
    let mount = SINK_MOUNT.replace("\"output\"", &format!("\"{host}\""));
    replace_in(&job, SINK_MOUNT, &mount);
    job
}

/// Asserts that `host run job` and `host check job --from savepoint` are both refused (exit
/// code 1) naming each of `needles`, and change no file.
fn assert_refused(dir: &Dir, job: &Path, savepoint: &str, needles: &[&str]) {
    let job = job.to_str().unwrap();
    dir.refused(&["run", job], needles);
    dir.refused(&["check", job, "--from", savepoint], needles);
}

#[test]
fn a_mount_of_the_compiled_module_cache_is_refused_and_nothing_lands_there() {
    let (dir, savepoint) = with_savepoint();
    let job = job_with_sink_mount(&dir, dir.path(), "home/cache");
    // `refused` also asserts that no file changed: no part file beside the compiled modules.
    assert_refused(
        &dir,
        &job,
        &savepoint,
        &[
            "operator `sink`: the writable mount",
            "overlaps the compiled-module cache",
        ],
    );
}

#[test]
fn a_mount_of_the_folder_holding_the_state_folder_is_refused_even_read_only() {
    let (dir, savepoint) = with_savepoint();
    let job = dir.write_job(&WordCount::default());
    replace_in(
        &job,
        r#"{ host = "input", guest = "/input" }"#,
        r#"{ host = ".", guest = "/input" }"#,
    );
    assert_refused(
        &dir,
        &job,
        &savepoint,
        &[
            "operator `lines`: the read-only mount",
            "overlaps the state folder",
        ],
    );
}

#[test]
fn a_writable_mount_of_the_job_files_folder_is_refused_and_a_read_only_one_is_not() {
    let (dir, savepoint) = with_savepoint();
    // A job file in a folder of its own, which does not hold the state folder.
    let folder = dir.path().join("second");
    let job = job_with_sink_mount(&dir, &folder, ".");
    assert_refused(
        &dir,
        &job,
        &savepoint,
        &[
            "operator `sink`: the writable mount",
            "overlaps the job file's folder",
        ],
    );
    // Reading its input through the job file's folder is what job files do.
    let job = dir.write_job_in(&folder, &WordCount::default());
    replace_in(
        &job,
        r#"config = { path = "/input/words.txt" }
mounts = [{ host = "input", guest = "/input" }]"#,
        r#"config = { path = "/job/input/words.txt" }
mounts = [{ host = ".", guest = "/job" }]"#,
    );
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    assert_exactly_once(
        &crate::util::committed_output_in(&folder),
        &input_text(LINES),
    );
}

#[test]
fn a_symbolic_link_to_the_cache_is_refused_as_the_cache() {
    let (dir, savepoint) = with_savepoint();
    std::os::unix::fs::symlink(dir.home().join("cache"), dir.path().join("out-link")).unwrap();
    let job = job_with_sink_mount(&dir, dir.path(), "out-link");
    assert_refused(
        &dir,
        &job,
        &savepoint,
        &["the writable mount", "overlaps the compiled-module cache"],
    );
}

#[test]
fn a_compiled_module_the_host_did_not_write_is_compiled_again_never_loaded() {
    let dir = Dir::new(LINES);
    let cache = dir.home().join("cache");
    let job = dir.write_job(&WordCount::default());
    // Warm: every module of the job compiled and cached, each with its record.
    dir.start(&[job.to_str().unwrap()]).wait_ok();
    let counter = cached_module(&cache, &guest("counter_v1")).expect("counter compiled");
    let tokenizer = cached_module(&cache, &guest("tokenizer")).expect("tokenizer compiled");

    // In the counter's place, a valid compiled module of this very engine, of another
    // component (the tokenizer, an operator too): loaded, it would count nothing. The file is
    // replaced, not written into (it may be a hard link into the tests' shared cache).
    let planted = std::fs::read(&tokenizer).unwrap();
    std::fs::remove_file(&counter).unwrap();
    std::fs::write(&counter, &planted).unwrap();
    std::fs::remove_dir_all(dir.path().join("output")).unwrap();
    std::fs::create_dir(dir.path().join("output")).unwrap();
    let running = dir.start(&[job.to_str().unwrap()]);
    let (ok, stderr) = running.wait();
    assert!(ok, "the job failed:\n{stderr}");
    assert!(
        stderr.contains("not loading the cached module")
            && stderr.contains("its bytes are not those the host recorded"),
        "no warning about the planted file:\n{stderr}"
    );
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
    let replaced = std::fs::read(&counter).unwrap();
    assert_ne!(replaced, planted, "the planted file is still in the cache");

    // Bytes that are no compiled module at all, and no record: the same.
    std::fs::remove_file(&counter).unwrap();
    std::fs::write(&counter, b"not a compiled module").unwrap();
    let mut record = counter.clone().into_os_string();
    record.push(".hmac");
    std::fs::remove_file(&record).unwrap();
    std::fs::remove_dir_all(dir.path().join("output")).unwrap();
    std::fs::create_dir(dir.path().join("output")).unwrap();
    let (ok, stderr) = dir.start(&[job.to_str().unwrap()]).wait();
    assert!(ok, "the job failed:\n{stderr}");
    assert!(stderr.contains("no record of it"), "{stderr}");
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
    assert_ne!(std::fs::read(&counter).unwrap(), b"not a compiled module");
}

/// A module file is the job's own code: a guest that could rewrite it would run its code, with
/// that operator's grants, at the job's next start. A writable mount covering one is refused
/// wherever the module lies; reading the folder is not.
#[test]
fn a_writable_mount_covering_a_module_file_is_refused() {
    let (dir, savepoint) = with_savepoint();
    let modules = dir.path().join("modules-here");
    std::fs::create_dir_all(&modules).unwrap();
    let counter = modules.join("counter.wasm");
    std::fs::copy(guest("counter_v1"), &counter).unwrap();
    let job = dir.write_job_in(
        &dir.path().join("jobs"),
        &WordCount {
            counter: counter.clone(),
            ..WordCount::default()
        },
    );
    let writable = SINK_MOUNT.replace("\"output\"", &format!("\"{}\"", modules.display()));
    replace_in(&job, SINK_MOUNT, &writable);
    assert_refused(
        &dir,
        &job,
        &savepoint,
        &[
            "operator `sink`: the writable mount",
            "overlaps a module of the job",
            "counter.wasm",
        ],
    );
}
