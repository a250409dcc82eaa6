//! Guarantee 12: with connectors, exactly-once holds end to end against the real servers
//! (`servers`): lines published to a JetStream stream, split by the tokenizer, counted by the
//! counter, and written to PostgreSQL (two-phase commit, or upserts) or published to JetStream,
//! through `kill -9` at random moments and at every phase of a checkpoint (the torture's
//! supervisor), a crash between `PREPARE TRANSACTION` and the checkpoint's completion and one
//! between the completion and `COMMIT PREPARED`, and a savepoint resumed with the sink rescaled
//! and the counter upgraded. Every expected row is there exactly once, the counts are those of
//! a count made without the host, and no prepared transaction of the job is left behind.

mod bad_input;

use std::path::PathBuf;
use std::time::Duration;

use crate::servers::{Database, Nats, PG_PASSWORD_ENV, servers, unique};
use crate::torture::{Rng, Target, supervise};
use crate::util::{Dir, assert_exactly_once, guest, input_text, word_counts};

const LINES: usize = 3_000;
/// A stream's duplicate window long enough for the NATS sink's default requirement.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// Where a job's counts go.
pub enum Sink<'a> {
    /// A PostgreSQL table, by two-phase commit.
    Postgres(&'a Database),
    /// A PostgreSQL table with a unique key, by upserts.
    Upsert(&'a Database),
    /// A JetStream stream.
    Nats {
        /// The stream.
        stream: &'a str,
        /// Its subject.
        subject: &'a str,
    },
}

/// JetStream -> tokenizer -> counter -> a sink.
pub struct Pipeline<'a> {
    /// The source's stream and subject.
    pub stream: &'a str,
    /// Its subject.
    pub subject: &'a str,
    /// Where the counts go.
    pub sink: Sink<'a>,
    /// The sink's subtasks.
    pub sink_parallelism: u32,
    /// The counter's component.
    pub counter: PathBuf,
    /// Checkpoint interval.
    pub checkpoint_interval_ms: u64,
    /// The source's throttle.
    pub lines_per_second: u64,
}

impl<'a> Pipeline<'a> {
    /// A pipeline from `stream` to `sink`, with two sink subtasks.
    pub fn new(stream: &'a str, subject: &'a str, sink: Sink<'a>) -> Self {
        Pipeline {
            stream,
            subject,
            sink,
            sink_parallelism: 2,
            counter: guest("counter_v1"),
            checkpoint_interval_ms: 100,
            lines_per_second: 2_000,
        }
    }

    /// The sink's operator table.
    fn sink_lines(&self) -> String {
        let (connector, config, partition) = match &self.sink {
            Sink::Postgres(db) => (
                "postgres",
                format!(
                    "{{ url = \"{}\", table = \"counts\", password_env = \"{PG_PASSWORD_ENV}\" }}",
                    db.url()
                ),
                // Every sink subtask gets rows between any two checkpoints (a subtask without
                // any prepares nothing), so that each one's transactions are put to the test.
                "key-by",
            ),
            Sink::Upsert(db) => (
                "postgres",
                format!(
                    "{{ url = \"{}\", table = \"counts\", mode = \"upsert\", \
                     password_env = \"{PG_PASSWORD_ENV}\" }}",
                    db.url()
                ),
                "key-by",
            ),
            Sink::Nats { stream, subject } => (
                "nats",
                format!(
                    "{{ url = \"{}\", stream = \"{stream}\", subject = \"{subject}\" }}",
                    Nats::url()
                ),
                "rebalance",
            ),
        };
        format!(
            "[[operators]]\nid = \"sink\"\nrole = \"sink\"\nconnector = \"{connector}\"\n\
             parallelism = {}\nconfig = {config}\n\n\
             [[edges]]\nfrom = \"counter\"\nto = \"sink\"\npartition = \"{partition}\"\n",
            self.sink_parallelism
        )
    }

    /// The job file's text.
    pub fn text(&self) -> String {
        format!(
            r#"name = "connectors"
checkpoint_interval_ms = {interval}
checkpoints_retained = 2

[[operators]]
id = "lines"
role = "source"
connector = "nats"
records_per_second_max = {rate}
config = {{ url = "{url}", stream = "{stream}", subjects = ["{subject}"], stop_at_end = true }}

[[operators]]
id = "tokenize"
role = "operator"
module = "{tokenizer}"
parallelism = 2

[[operators]]
id = "counter"
role = "operator"
module = "{counter}"
parallelism = 2

[[edges]]
from = "lines"
to = "tokenize"
partition = "rebalance"

[[edges]]
from = "tokenize"
to = "counter"
partition = "key-by"

{sink}"#,
            interval = self.checkpoint_interval_ms,
            rate = self.lines_per_second,
            url = Nats::url(),
            stream = self.stream,
            subject = self.subject,
            tokenizer = guest("tokenizer").display(),
            counter = self.counter.display(),
            sink = self.sink_lines(),
        )
    }

    /// Writes the job file into `dir`; returns its path.
    pub fn write(&self, dir: &Dir) -> String {
        let path = dir.path().join("job.toml");
        std::fs::write(&path, self.text()).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

/// A scratch folder whose `host` commands get the PostgreSQL role's password.
pub fn scratch() -> Dir {
    let password = servers().pg_password.clone();
    Dir::new(0).with_env(&[(PG_PASSWORD_ENV.to_owned(), password)])
}

/// A fresh stream holding the input's lines, one message each: its name and subject.
pub fn stream_of(nats: &Nats, input: &str) -> (String, String) {
    let stream = unique("LINES");
    let subject = format!("{}.lines", stream.to_lowercase());
    nats.create_stream(&stream, &[&subject], DUPLICATE_WINDOW);
    nats.publish(&subject, input.lines());
    (stream, subject)
}

/// A round of the torture: a fresh stream and database.
fn postgres_target(rng: &mut Rng, nats: &Nats) -> Target {
    let input = input_text(LINES);
    let (stream, subject) = stream_of(nats, &input);
    let database = Database::new();
    let dir = scratch();
    let mut pipeline = Pipeline::new(&stream, &subject, Sink::Postgres(&database));
    pipeline.checkpoint_interval_ms = 40 + rng.below(120);
    pipeline.lines_per_second = 4_000;
    let job_file = pipeline.write(&dir);
    Target {
        dir,
        job_file,
        input,
        committed: Box::new(move |_| {
            let prepared = database.prepared();
            assert!(prepared.is_empty(), "left prepared: {prepared:?}");
            database.values()
        }),
    }
}

#[test]
fn jetstream_to_postgres_counts_each_word_once_through_kill_9_anywhere() {
    let nats = Nats::connect();
    let kills = std::env::var("CONNECTORS_TORTURE_KILLS").map_or(6, |k| k.parse().unwrap());
    supervise("connectors torture", kills, &mut |rng| {
        postgres_target(rng, &nats)
    });
}

/// A word count from a fresh stream into `database` by two-phase commit, crashed at `phase` of
/// checkpoint 3: the crashed job's id, its job file and scratch folder, and the input.
fn crashed_at(database: &Database, phase: &str) -> (String, String, Dir, String) {
    let nats = Nats::connect();
    let input = input_text(LINES);
    let (stream, subject) = stream_of(&nats, &input);
    let dir = scratch();
    let job_file = Pipeline::new(&stream, &subject, Sink::Postgres(database)).write(&dir);
    let running = dir.start(&[&job_file, "--crash-at", &format!("{phase}:3")]);
    let job = running.job.clone();
    let (status, stderr) = running.wait_status();
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(6), "{stderr}");
    assert!(
        stderr.contains(&format!("crash injected at {phase} of checkpoint 3")),
        "{stderr}"
    );
    (job, job_file, dir, input)
}

/// Asserts that `database` holds transactions prepared for checkpoint 3, and for no other (a
/// sink subtask that received no rows since checkpoint 2 prepared none).
fn assert_prepared_for_3(database: &Database) {
    let gids = database.prepared();
    let checkpoint = |gid: &String| gid.rsplit(':').next().unwrap().to_owned();
    assert!(
        !gids.is_empty() && gids.iter().all(|g| checkpoint(g) == "3"),
        "{gids:?}"
    );
}

#[test]
fn a_crash_between_prepare_and_the_checkpoints_completion_is_rolled_back_by_recover() {
    let database = Database::new();
    let (job, job_file, dir, input) = crashed_at(&database, "metadata-written");
    // The sink subtasks prepared checkpoint 3 (their state was written after), which never
    // completed: its rows are invisible, and must never become visible.
    assert_prepared_for_3(&database);
    let before = database.values().len();
    dir.start(&[&job_file, "--from", &job]).wait_ok();
    assert!(database.values().len() > before);
    assert_exactly_once(&database.values(), &input);
    assert_eq!(database.prepared(), Vec::<String>::new());
}

#[test]
fn a_crash_between_the_checkpoints_completion_and_commit_prepared_is_committed_by_recover() {
    let database = Database::new();
    let (job, job_file, dir, input) = crashed_at(&database, "published");
    // Checkpoint 3 completed: its transactions are prepared, not committed; the resumed job's
    // `recover` commits them (and the rows they hold are not written again).
    assert_prepared_for_3(&database);
    // Without the job file: the point's own program, connectors and all.
    std::fs::remove_file(&job_file).unwrap();
    dir.start(&["--from", &job]).wait_ok();
    assert_exactly_once(&database.values(), &input);
    assert_eq!(database.prepared(), Vec::<String>::new());
}

#[test]
fn a_savepoint_resumes_with_the_sink_rescaled_from_2_to_3_and_the_counter_upgraded_then_back_to_2()
{
    let nats = Nats::connect();
    let input = input_text(LINES);
    let (stream, subject) = stream_of(&nats, &input);
    let database = Database::new();
    let dir = scratch();
    let mut pipeline = Pipeline::new(&stream, &subject, Sink::Postgres(&database));
    pipeline.lines_per_second = 1_000;
    let job_file = pipeline.write(&dir);
    let running = dir.start(&[&job_file]);
    crate::util::wait_until("some rows committed", || database.values().len() > 500);
    let savepoint = dir.save_and_stop(running);
    pipeline.sink_parallelism = 3;
    pipeline.counter = guest("counter_v2");
    let job_file = pipeline.write(&dir);
    let checked = dir.host_ok(&["check", &job_file, "--from", &savepoint]);
    assert!(checked.contains("sink: parallelism 2 -> 3"), "{checked}");
    // Both show where each connector is: the source's stream sequence, the sink's lineage.
    for shown in [checked, dir.host_ok(&["inspect", &savepoint])] {
        let prefix = format!("lines[0]  stream `{stream}`: `{subject}` sequence ");
        let sequence = shown
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix.as_str()));
        let sequence: usize = sequence
            .unwrap_or_else(|| panic!("{shown}"))
            .parse()
            .unwrap();
        assert!(0 < sequence && sequence < LINES, "{shown}");
        assert!(shown.contains("sink[1]  lineage job-"), "{shown}");
    }
    // At 3, crashed once a checkpoint completed and before its commit: its transactions are
    // left prepared, sink subtask 2's among them; resumed at 2, new subtask 0 commits old
    // subtask 2's (2 % 2), as it commits its own.
    let saved_at: u64 = savepoint.rsplit('-').nth(1).unwrap().parse().unwrap();
    let crash_at = format!("published:{}", saved_at + 3);
    let crashed = dir.start(&[&job_file, "--from", &savepoint, "--crash-at", &crash_at]);
    let killed = crashed.job.clone();
    let (_, stderr) = crashed.wait_status();
    assert!(stderr.contains("crash injected at published"), "{stderr}");
    let prepared = database.prepared();
    assert!(
        prepared.iter().any(|g| g.contains(":sink:2:")),
        "{prepared:?}"
    );
    pipeline.sink_parallelism = 2;
    let job_file = pipeline.write(&dir);
    dir.start(&[&job_file, "--from", &killed]).wait_ok();
    let values = database.values();
    crate::util::assert_v1_then_v2(&values);
    assert_exactly_once(&values, &input);
    assert_eq!(database.prepared(), Vec::<String>::new());
}

#[test]
fn an_upsert_sink_ends_with_each_words_count_once_after_a_crash_before_commit() {
    let nats = Nats::connect();
    let input = input_text(LINES);
    let (stream, subject) = stream_of(&nats, &input);
    let database = Database::new();
    database.sql("ALTER TABLE counts ADD PRIMARY KEY (key)");
    let dir = scratch();
    let mut pipeline = Pipeline::new(&stream, &subject, Sink::Upsert(&database));
    // The input is read long before a periodic checkpoint: the final checkpoint (1) holds
    // every row, and the crash leaves them in its state only, for `recover` to write.
    pipeline.checkpoint_interval_ms = 60_000;
    pipeline.lines_per_second = 100_000;
    let job_file = pipeline.write(&dir);
    let running = dir.start(&[&job_file, "--crash-at", "published:1"]);
    let job = running.job.clone();
    let (_, stderr) = running.wait_status();
    assert!(
        stderr.contains("crash injected at published of checkpoint 1"),
        "{stderr}"
    );
    assert_eq!(database.values(), Vec::<String>::new());
    dir.start(&[&job_file, "--from", &job]).wait_ok();
    let rows = database.sql("SELECT key || ' ' || value FROM counts ORDER BY key");
    let expected: Vec<String> = word_counts(&input)
        .into_iter()
        .map(|(word, count)| format!("{word} {word} {count}"))
        .collect();
    assert_eq!(rows, expected);
}

#[test]
fn a_nats_sink_publishes_each_count_once_when_a_commit_is_repeated_after_a_crash() {
    let nats = Nats::connect();
    let input = input_text(LINES);
    let (stream, subject) = stream_of(&nats, &input);
    let out = unique("COUNTS");
    let out_subject = format!("{}.out", out.to_lowercase());
    nats.create_stream(&out, &[&out_subject], DUPLICATE_WINDOW);
    let dir = scratch();
    let sink = Sink::Nats {
        stream: &out,
        subject: &out_subject,
    };
    let job_file = Pipeline::new(&stream, &subject, sink).write(&dir);
    // One sink subtask published checkpoint 3's counts; the resumed job publishes them again
    // from the checkpoint, under the same message ids.
    let running = dir.start(&[&job_file, "--crash-at", "sink-committed:3"]);
    let job = running.job.clone();
    let (_, stderr) = running.wait_status();
    assert!(
        stderr.contains("crash injected at sink-committed"),
        "{stderr}"
    );
    dir.start(&[&job_file, "--from", &job]).wait_ok();
    assert_exactly_once(&nats.messages(&out), &input);
}
