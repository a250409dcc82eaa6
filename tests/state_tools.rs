//! `host state`: a point's state read, edited, bootstrapped and repartitioned offline, by the
//! real host, on points the real counters wrote; every job resumed from a point it wrote
//! continues exactly, and every refusal changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use serde_json::{Value as Json, json};

use crate::util::{
    Dir, WordCount, assert_exactly_once, guest, input_text, wait_until, word_counts,
};

const LINES: usize = 1_500;

/// A word count with this counter, its other operators at parallelism 2.
fn job(counter: &str, counter_parallelism: u32, lines_per_second: u64) -> WordCount {
    WordCount {
        counter: guest(counter),
        counter_parallelism,
        lines_per_second,
        ..WordCount::default()
    }
}

/// `host state read POINT --operator counter`: each row's fields, in the order printed.
fn read_rows(dir: &Dir, point: &str) -> Vec<Json> {
    let out = dir.host_ok(&["state", "read", point, "--operator", "counter"]);
    out.lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The counts `state read` gives: word -> count.
fn read_counts(dir: &Dir, point: &str) -> BTreeMap<String, u64> {
    let rows = read_rows(dir, point);
    let count = |row: &Json| {
        (
            row["key"].as_str().unwrap().to_owned(),
            row["value"].as_u64().unwrap(),
        )
    };
    rows.iter().map(count).collect()
}

/// The last count of each word in `output` (`word count` lines).
fn last_counts(output: &[String]) -> BTreeMap<String, u64> {
    let mut last = BTreeMap::new();
    for line in output {
        let mut fields = line.split_whitespace();
        let (word, count) = (fields.next().unwrap(), fields.next().unwrap());
        let count: u64 = count.parse().unwrap();
        let at = last.entry(word.to_owned()).or_insert(0);
        *at = (*at).max(count);
    }
    last
}

/// Runs `file` until it committed output past what is there, then stops it with a savepoint.
fn savepoint_mid_stream(dir: &Dir, file: &Path) -> String {
    let before = dir.committed_output().len();
    let running = dir.start(&[file.to_str().unwrap()]);
    wait_until("output committed", || {
        dir.committed_output().len() > before + 50
    });
    dir.save_and_stop(running)
}

/// Each `word count` line as (word, count), counted.
fn multiset(lines: &[String]) -> BTreeMap<(String, u64), usize> {
    let mut counted = BTreeMap::new();
    for line in lines {
        let mut fields = line.split_whitespace();
        let word = fields.next().unwrap().to_owned();
        *counted
            .entry((word, fields.next().unwrap().parse().unwrap()))
            .or_default() += 1;
    }
    counted
}

/// What a count resumed from counts `at` a point with each word started from `from` commits:
/// for each word seen n times in all, `1..=at` before the point, then `from+1..` for the
/// n - at times after it.
fn expected_after_edit(
    at: &BTreeMap<String, u64>,
    from: &BTreeMap<String, u64>,
) -> BTreeMap<(String, u64), usize> {
    let mut expected = BTreeMap::new();
    for (word, n) in word_counts(&input_text(LINES)) {
        let before = at.get(&word).copied().unwrap_or(0);
        let start = from.get(&word).copied().unwrap_or(0);
        let counts = (1..=before).chain(start + 1..=start + (n - before));
        for count in counts {
            *expected.entry((word.clone(), count)).or_default() += 1;
        }
    }
    expected
}

#[test]
fn state_read_gives_the_same_rows_from_the_rust_python_and_javascript_counters() {
    let counts = word_counts(&input_text(LINES));
    let mut all_rows = Vec::new();
    for counter in ["counter_v1", "counter_v1_py", "counter_v1_js"] {
        let dir = Dir::new(LINES);
        let file = dir.write_job(&job(counter, 2, 4_000));
        let running = dir.start(&[file.to_str().unwrap()]);
        let job_id = running.job.clone();
        running.wait_ok();
        let printed = dir.host_ok(&["state", "read", &job_id, "--operator", "counter"]);
        assert!(
            printed.starts_with("{\"key_group\":"),
            "{counter}: {printed}"
        );
        let rows = read_rows(&dir, &job_id);
        // Every word's count, as the input gives it, computed without the host.
        assert_eq!(read_counts(&dir, &job_id), counts, "{counter}");
        assert!(rows.iter().all(|row| row["version"] == 1));
        if counter == "counter_v1" {
            assert_parquet_has_the_rows(&dir, &job_id, &rows);
            // The line source keeps its position in postcard: refused, and named.
            let refused = dir.refused(
                &["state", "read", &job_id, "--operator", "lines"],
                &[
                    "operator `lines`",
                    "not in the portable envelope",
                    "postcard",
                    "`encode_state`",
                ],
            );
            assert!(refused.contains("operator state (subtask 0)"), "{refused}");
        }
        all_rows.push(rows);
    }
    assert_eq!(all_rows[0], all_rows[1], "Rust and Python");
    assert_eq!(all_rows[0], all_rows[2], "Rust and JavaScript");
}

/// `state read --format parquet` of `point` holds `rows` (read back by a Parquet reader),
/// its value an unsigned 64-bit column.
fn assert_parquet_has_the_rows(dir: &Dir, point: &str, rows: &[Json]) {
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::RowAccessor as _;
    let out = dir.path().join("counts.parquet");
    let args = [
        "state",
        "read",
        point,
        "--operator",
        "counter",
        "--format",
        "parquet",
        "--out",
    ];
    dir.host_ok(&[&args[..], &[out.to_str().unwrap()]].concat());
    let reader = SerializedFileReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let schema = reader.metadata().file_metadata().schema_descr();
    let value = schema.column(3);
    assert_eq!(value.name(), "value");
    assert_eq!(
        value.logical_type_ref(),
        Some(&parquet::basic::LogicalType::integer(64, false))
    );
    let read: Vec<Json> = reader
        .get_row_iter(None)
        .unwrap()
        .map(|row| {
            let row = row.unwrap();
            let (group, key) = (row.get_uint(0).unwrap(), row.get_string(1).unwrap());
            let (version, value) = (row.get_uint(2).unwrap(), row.get_ulong(3).unwrap());
            json!({"key_group": group, "key": key, "value": value, "version": version})
        })
        .collect();
    assert_eq!(read, rows);
    std::fs::remove_file(out).unwrap();
}

#[test]
fn state_write_then_run_from_continues_from_the_edited_counts_exactly() {
    let dir = Dir::new(LINES);
    let file = dir.write_job(&job("counter_v1", 2, 100));
    let point = savepoint_mid_stream(&dir, &file);
    let before = dir.committed_output();
    let at = read_counts(&dir, &point);
    // What the point holds is what the output committed up to it says.
    assert_eq!(at, last_counts(&before));
    let (raised, dropped) = {
        let mut words = at.keys();
        (words.next().unwrap().clone(), words.next().unwrap().clone())
    };
    let unseen = word_counts(&input_text(LINES))
        .into_keys()
        .find(|word| !at.contains_key(word))
        .expect("a word the point has not counted yet");
    let upserts = dir.path().join("upserts.jsonl");
    let rows = format!(
        "{}\n{}\n",
        json!({"key": raised, "value": 1_000}),
        json!({"key": unseen, "value": 500, "version": 1})
    );
    std::fs::write(&upserts, rows).unwrap();
    let deletions = dir.path().join("deletions.jsonl");
    std::fs::write(&deletions, format!("{}\n", json!({"key": dropped}))).unwrap();
    let original = dir.home().join("savepoints").join(&point);
    let untouched = dir.snapshot_tree(&original);
    let (upserts, deletions) = (upserts.to_str().unwrap(), deletions.to_str().unwrap());
    let written = dir.host_ok(&command(&format!(
        "state write {point} --operator counter --upsert {upserts} --delete {deletions} --to edited"
    )));
    assert!(written.starts_with("edited\n"), "{written}");
    crate::util::assert_same_tree(&untouched, &dir.snapshot_tree(&original), "state write");
    assert_shares_files(&original, &dir.home().join("savepoints/edited"));
    let mut edited = at.clone();
    edited.insert(raised.clone(), 1_000);
    edited.insert(unseen.clone(), 500);
    edited.remove(&dropped);
    assert_eq!(read_counts(&dir, "edited"), edited);
    let lineage = dir.host_ok(&["savepoints", "--tree"]);
    assert!(lineage.contains("state-write-"), "{lineage}");

    let check = dir.host_ok(&["check", file.to_str().unwrap(), "--from", "edited"]);
    assert!(check.starts_with("ok:"), "{check}");
    let last = dir.write_job(&job("counter_v1", 2, 4_000));
    dir.start(&[last.to_str().unwrap(), "--from", "edited"])
        .wait_ok();
    let mut from = at.clone();
    from.insert(raised, 1_000);
    from.insert(unseen, 500);
    from.remove(&dropped);
    assert_eq!(
        multiset(&dir.committed_output()),
        expected_after_edit(&at, &from)
    );
}

/// Some of `derived`'s files are the very files of `original` (hard links), and it has new ones.
fn assert_shares_files(original: &Path, derived: &Path) {
    let inodes = |dir: &Path| -> BTreeSet<u64> {
        let files = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().ino());
        files.collect()
    };
    let (old, new) = (inodes(original), inodes(derived));
    assert!(!old.is_disjoint(&new), "no file shared");
    assert!(!new.is_subset(&old), "no file new");
}

#[test]
fn state_bootstrap_then_run_counts_from_the_data() {
    let dir = Dir::new(LINES);
    let file = dir.write_job(&job("counter_v1", 3, 4_000));
    let data: BTreeMap<String, u64> = (0..40).map(|i| (format!("w{i}"), 100 + i)).collect();
    let rows: String = data
        .iter()
        .map(|(word, n)| format!("{}\n", json!({"key": word, "value": n})))
        .collect();
    let from = dir.path().join("counts.jsonl");
    std::fs::write(&from, rows).unwrap();
    let args = [
        "state",
        "bootstrap",
        file.to_str().unwrap(),
        "--operator",
        "counter",
        "--from",
    ];
    let flags = [
        "--state-format",
        "word-count",
        "--state-version",
        "1",
        "--to",
        "boot",
    ];
    dir.host_ok(&[&args[..], &[from.to_str().unwrap()], &flags[..]].concat());
    assert_eq!(read_counts(&dir, "boot"), data);
    let check = dir.host_ok(&["check", file.to_str().unwrap(), "--from", "boot"]);
    assert!(check.contains("counter          restored"), "{check}");
    dir.start(&[file.to_str().unwrap(), "--from", "boot"])
        .wait_ok();
    let expected = expected_after_edit(&BTreeMap::new(), &data);
    assert_eq!(multiset(&dir.committed_output()), expected);
}

#[test]
fn state_repartition_from_128_to_256_then_a_rescale_from_2_to_3_is_exact() {
    let dir = Dir::new(LINES);
    let file = dir.write_job(&job("counter_v1", 2, 100));
    let point = savepoint_mid_stream(&dir, &file);
    dir.repartition(&point, 256, "wider");
    let (old, new) = (read_rows(&dir, &point), read_rows(&dir, "wider"));
    let keyed = |rows: &[Json]| -> BTreeMap<String, (u64, u64)> {
        let row = |r: &Json| {
            (
                r["key"].as_str().unwrap().to_owned(),
                (
                    r["value"].as_u64().unwrap(),
                    r["key_group"].as_u64().unwrap(),
                ),
            )
        };
        rows.iter().map(row).collect()
    };
    let (old, new) = (keyed(&old), keyed(&new));
    assert_eq!(
        old.keys().collect::<Vec<_>>(),
        new.keys().collect::<Vec<_>>()
    );
    for (word, (count, group)) in &new {
        assert_eq!(*count, old[word].0, "{word}");
        assert_eq!(
            *group,
            u64::from(host::key_group::key_group(word.as_bytes(), 256)),
            "{word}"
        );
    }
    assert!(
        new.values().any(|(_, group)| *group >= 128),
        "no key in the new groups"
    );
    // The recorded program runs at 256 without a job file; a job file must say 256 too.
    let check = dir.host_ok(&["check", "--from", "wider"]);
    assert!(check.starts_with("ok:"), "{check}");
    dir.refused(
        &["check", file.to_str().unwrap(), "--from", "wider"],
        &["max_parallelism = 256"],
    );
    let three = dir.write_job(&job("counter_v1", 3, 4_000));
    let text = std::fs::read_to_string(&three).unwrap();
    std::fs::write(&three, format!("max_parallelism = 256\n{text}")).unwrap();
    let check = dir.host_ok(&["check", three.to_str().unwrap(), "--from", "wider"]);
    assert!(check.contains("counter: parallelism 2 -> 3"), "{check}");
    dir.start(&[three.to_str().unwrap(), "--from", "wider"])
        .wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}

#[test]
fn state_tools_refuse_bad_input_by_line_and_change_nothing() {
    let dir = Dir::new(200);
    let file = dir.write_job(&job("counter_v1", 2, 4_000));
    let running = dir.start(&[file.to_str().unwrap()]);
    let point = running.job.clone();
    running.wait_ok();
    let write_file = |name: &str, lines: &[Json]| -> PathBuf {
        let path = dir.path().join(name);
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).unwrap();
        path
    };
    // A word whose key group differs at 256: a row read from a repartitioned point.
    let moved = (0..300)
        .map(|i| format!("w{i}"))
        .find(|w| host::key_group::key_group(w.as_bytes(), 256) >= 128)
        .unwrap();
    let good = write_file("good.jsonl", &[json!({"key": "w1", "value": 7})]);
    let not_pair = write_file(
        "pair.jsonl",
        &[json!({"key": "w1", "value": 7}), json!(["w2", 3])],
    );
    let not_fit = write_file("fit.jsonl", &[json!({"key": "w1", "value": "ten"})]);
    let other_job = write_file(
        "other.jsonl",
        &[
            json!({"key_group": host::key_group::key_group(moved.as_bytes(), 256), "key": moved, "value": 1}),
        ],
    );
    let newer = write_file(
        "newer.jsonl",
        &[json!({"key": "w1", "version": 2, "value": [1, null]})],
    );
    let missing = write_file("missing.jsonl", &[json!({"key": "never-seen"})]);
    let (job, point) = (file.to_str().unwrap(), point.as_str());
    let path = |file: &PathBuf| file.to_str().unwrap().to_owned();
    let (good, not_pair, not_fit) = (path(&good), path(&not_pair), path(&not_fit));
    let (other_job, newer, missing) = (path(&other_job), path(&newer), path(&missing));
    dir.host_ok(&command(&format!(
        "state write {point} --operator counter --upsert {good} --to taken"
    )));
    let write = format!("state write {point} --operator counter");
    let bootstrap =
        format!("state bootstrap {job} --state-format word-count --state-version 1 --to new");
    let cases: Vec<(String, &[&str])> = vec![
        (
            format!("state read {point} --operator nope"),
            &["no operator `nope`", "`counter`"],
        ),
        (
            format!("state read {point} --operator nope --format parquet --out x.parquet"),
            &["no operator `nope`"],
        ),
        (
            format!("{write} --upsert {not_pair} --to new"),
            &["pair.jsonl:2: not a key/value pair"],
        ),
        (
            format!("{write} --upsert {not_fit} --to new"),
            &[
                "fit.jsonl:1:",
                "does not fit state `word-count` v1: its values are unsigned integers",
            ],
        ),
        (
            format!("{write} --upsert {other_job} --to new"),
            &["other.jsonl:1:", "a point of another job"],
        ),
        (
            format!("{write} --upsert {newer} --to new"),
            &["newer.jsonl:1:", "version 2"],
        ),
        (
            format!("{write} --delete {missing} --to new"),
            &["missing.jsonl:1:", "is not in the state"],
        ),
        (
            format!("{write} --upsert {good} --to taken"),
            &["savepoint `taken` exists already"],
        ),
        (
            format!("state repartition {point} --max-parallelism 128 --to new"),
            &["as many key groups already"],
        ),
        (
            format!("{bootstrap} --operator nope --from {good}"),
            &["job file", "no operator `nope`"],
        ),
        (
            format!("{bootstrap} --operator counter --from {not_pair}"),
            &["pair.jsonl:2: not a key/value pair"],
        ),
    ];
    for (args, needles) in cases {
        dir.refused(&command(&args), needles);
    }
}

/// A command's arguments, split at spaces (the scratch folders' paths have none).
fn command(text: &str) -> Vec<&str> {
    text.split_whitespace().collect()
}

#[test]
fn state_write_on_an_object_store_copies_server_side_and_resumes_exactly() {
    let server = crate::s3::S3Server::start();
    let dir = Dir::new(LINES).with_env(&server.env("team/state"));
    let file = dir.write_job(&job("counter_v1", 2, 100));
    let point = savepoint_mid_stream(&dir, &file);
    let at = read_counts(&dir, &point);
    let raised = at.keys().next().unwrap().clone();
    let upserts = dir.path().join("upserts.jsonl");
    std::fs::write(
        &upserts,
        format!("{}\n", json!({"key": raised, "value": 1_000})),
    )
    .unwrap();
    let original = server.keys(&format!("team/state/savepoints/{point}/"));
    let upserts = upserts.to_str().unwrap();
    dir.host_ok(&command(&format!(
        "state write {point} --operator counter --upsert {upserts} --to edited"
    )));
    assert_eq!(
        server.keys(&format!("team/state/savepoints/{point}/")),
        original
    );
    let edited = server.keys("team/state/savepoints/edited/");
    assert!(
        edited.iter().any(|k| k.ends_with("/_metadata")),
        "{edited:?}"
    );
    assert!(
        !dir.home().join("savepoints/edited").exists(),
        "written into the folder"
    );
    let mut from = at.clone();
    from.insert(raised, 1_000);
    assert_eq!(read_counts(&dir, "edited"), from);
    let last = dir.write_job(&job("counter_v1", 2, 4_000));
    dir.start(&[last.to_str().unwrap(), "--from", "edited"])
        .wait_ok();
    assert_eq!(
        multiset(&dir.committed_output()),
        expected_after_edit(&at, &from)
    );
}

#[test]
fn state_tools_read_and_write_from_a_savepoint_of_a_running_job_which_runs_on() {
    let dir = Dir::new(LINES);
    let file = dir.write_job(&job("counter_v1", 2, 100));
    let running = dir.start(&[file.to_str().unwrap()]);
    wait_until("output committed", || dir.committed_output().len() > 50);
    let point = dir.save(&running.job);
    let at = read_counts(&dir, &point);
    assert!(!at.is_empty());
    let word = at.keys().next().unwrap();
    let upserts = dir.path().join("upserts.jsonl");
    std::fs::write(&upserts, format!("{}\n", json!({"key": word, "value": 7}))).unwrap();
    let upserts = upserts.to_str().unwrap();
    dir.host_ok(&command(&format!(
        "state write {point} --operator counter --upsert {upserts} --to beside"
    )));
    assert_eq!(read_counts(&dir, "beside")[word], 7);
    // The job was never stopped: it finishes its input exactly.
    running.wait_ok();
    assert_exactly_once(&dir.committed_output(), &input_text(LINES));
}
