//! The Kafka connectors against a real Kafka-protocol broker (tansu, started by
//! [`crate::servers::kafka`]): lines produced to a topic, split by the tokenizer, counted by the
//! counter, and produced to another topic by the at-least-once sink, or written to PostgreSQL;
//! through `kill -9` at random moments and at every phase of a checkpoint (the torture's
//! supervisor), crashes after a checkpoint completed and before (or while) its sinks commit,
//! and a savepoint resumed with the source's partitions moved to a third subtask. Every count
//! is there at least once, every repeat is an exact copy (same id header, key, value and
//! partition), and the counts deduplicated by id are exactly the input's. And what cannot
//! work: a broker that is down, a topic that does not exist, each named before the job starts.

use std::collections::BTreeMap;
use std::future::Future;

use rskafka::client::partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

use crate::connectors::scratch;
use crate::servers::{Database, PG_PASSWORD_ENV, kafka, unique};
use crate::torture::{Target, supervise};
use crate::util::{Dir, assert_exactly_once, guest, input_text};

const LINES: usize = 2_000;
/// The header the sink gives each record (`host/src/connectors/kafka/sink.rs`).
const ID_HEADER: &str = "jobhost-id";

/// `127.0.0.1:PORT` of the tests' broker.
fn brokers() -> String {
    format!("127.0.0.1:{}", kafka())
}

/// `future`'s output, on a runtime of its own.
fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    runtime.unwrap().block_on(future)
}

async fn client() -> Client {
    ClientBuilder::new(vec![brokers()]).build().await.unwrap()
}

async fn partition(client: &Client, topic: &str, p: i32) -> PartitionClient {
    let connected = client.partition_client(topic, p, UnknownTopicHandling::Retry);
    connected.await.unwrap()
}

/// A fresh topic of `partitions` partitions.
fn topic(prefix: &str, partitions: i32) -> String {
    let name = unique(prefix);
    block_on(async {
        let controller = client().await.controller_client().unwrap();
        let created = controller.create_topic(&name, partitions, 1, 5_000).await;
        created.unwrap_or_else(|e| panic!("creating {name}: {e}"));
    });
    name
}

/// A fresh topic of `partitions` partitions holding the input's lines, line `i` in partition
/// `i % partitions`.
fn topic_of(input: &str, partitions: i32) -> String {
    let name = topic("lines", partitions);
    let mut by_partition: BTreeMap<i32, Vec<Record>> = BTreeMap::new();
    for (i, line) in input.lines().enumerate() {
        let record = Record {
            key: None,
            value: Some(line.as_bytes().to_vec()),
            headers: BTreeMap::new(),
            timestamp: chrono::Utc::now(),
        };
        by_partition
            .entry(i as i32 % partitions)
            .or_default()
            .push(record);
    }
    block_on(async {
        let client = client().await;
        for (p, records) in by_partition {
            let partition = partition(&client, &name, p).await;
            for chunk in records.chunks(500) {
                let sent = partition.produce(chunk.to_vec(), Compression::NoCompression);
                sent.await.unwrap();
            }
        }
    });
    name
}

/// One record the sink produced.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Produced {
    partition: i32,
    key: Option<Vec<u8>>,
    value: String,
    id: String,
}

/// Every record of `topic` now, partition by partition, in offset order.
fn records(topic: &str) -> Vec<Produced> {
    block_on(async {
        let client = client().await;
        let topics = client.list_topics().await.unwrap();
        let found = topics.into_iter().find(|t| t.name == topic).unwrap();
        let mut out = Vec::new();
        for p in found.partitions {
            let partition = partition(&client, topic, p).await;
            out.extend(read_partition(&partition).await);
        }
        out
    })
}

/// Every record of `partition`, up to its high watermark when asked.
async fn read_partition(partition: &PartitionClient) -> Vec<Produced> {
    let end = partition.get_offset(OffsetAt::Latest).await.unwrap();
    let mut next = partition.get_offset(OffsetAt::Earliest).await.unwrap();
    let mut out = Vec::new();
    while next < end {
        let (fetched, _) = partition
            .fetch_records(next, 1..1 << 20, 1_000)
            .await
            .unwrap();
        for found in fetched {
            next = found.offset + 1;
            let record = found.record;
            let id = record.headers.get(ID_HEADER).expect("a jobhost-id header");
            out.push(Produced {
                partition: partition.partition(),
                key: record.key,
                value: String::from_utf8(record.value.unwrap()).unwrap(),
                id: String::from_utf8(id.clone()).unwrap(),
            });
        }
    }
    out
}

/// The values of `records` deduplicated by id (the first of each), once every repeat is
/// checked to be an exact copy (same partition, key, value) of the first with its id.
fn deduplicated(records: Vec<Produced>) -> (Vec<String>, usize) {
    let mut first: BTreeMap<String, Produced> = BTreeMap::new();
    let (mut values, mut repeats) = (Vec::new(), 0);
    for record in records {
        match first.get(&record.id) {
            Some(seen) => {
                assert_eq!(seen, &record, "a repeat that is not an exact copy");
                repeats += 1;
            }
            None => {
                values.push(record.value.clone());
                first.insert(record.id.clone(), record);
            }
        }
    }
    (values, repeats)
}

/// `topic`'s counts deduplicated by id, asserted to be the input's word counts exactly once
/// (every expected count there at least once, every repeat an exact copy); its repeats.
fn assert_once_deduplicated(topic: &str, input: &str) -> usize {
    let (values, repeats) = deduplicated(records(topic));
    assert_exactly_once(&values, input);
    repeats
}

/// Where a job's counts go.
enum Out<'a> {
    Kafka(&'a str),
    Postgres(&'a Database),
}

/// Kafka -> tokenizer -> counter -> a sink, as a job file.
struct Job<'a> {
    input: &'a str,
    sources: u32,
    out: Out<'a>,
    sinks: u32,
    counter: &'static str,
    checkpoint_interval_ms: u64,
    lines_per_second: u64,
}

impl<'a> Job<'a> {
    fn new(input: &'a str, out: Out<'a>) -> Self {
        Job {
            input,
            sources: 3,
            out,
            sinks: 2,
            counter: "counter_v1",
            checkpoint_interval_ms: 100,
            lines_per_second: 2_000,
        }
    }

    fn sink(&self) -> String {
        match &self.out {
            Out::Kafka(topic) => format!(
                "connector = \"kafka\"\nconfig = {{ brokers = \"{}\", topic = \"{topic}\" }}",
                brokers()
            ),
            Out::Postgres(db) => format!(
                "connector = \"postgres\"\nconfig = {{ url = \"{}\", table = \"counts\", \
                 password_env = \"{PG_PASSWORD_ENV}\" }}",
                db.url()
            ),
        }
    }

    fn write(&self, dir: &Dir) -> String {
        let text = format!(
            r#"name = "kafka"
checkpoint_interval_ms = {interval}
checkpoints_retained = 2

[[operators]]
id = "lines"
role = "source"
connector = "kafka"
parallelism = {sources}
records_per_second_max = {rate}
config = {{ brokers = "{brokers}", topic = "{input}", stop_at_end = true }}

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

[[operators]]
id = "sink"
role = "sink"
parallelism = {sinks}
{sink}

[[edges]]
from = "lines"
to = "tokenize"
partition = "rebalance"

[[edges]]
from = "tokenize"
to = "counter"
partition = "key-by"

[[edges]]
from = "counter"
to = "sink"
partition = "key-by"
"#,
            interval = self.checkpoint_interval_ms,
            sources = self.sources,
            rate = self.lines_per_second,
            brokers = brokers(),
            input = self.input,
            tokenizer = guest("tokenizer").display(),
            counter = guest(self.counter).display(),
            sinks = self.sinks,
            sink = self.sink(),
        );
        let path = dir.path().join("job.toml");
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    }
}

/// Runs `job_file` crashed at `phase` of checkpoint 3 (the host aborts itself); returns the
/// crashed job's id.
fn crash_at(dir: &Dir, job_file: &str, phase: &str) -> String {
    let running = dir.start(&[job_file, "--crash-at", &format!("{phase}:3")]);
    let job = running.job.clone();
    let (status, stderr) = running.wait_status();
    // The host aborts itself: killed by SIGABRT, no exit code.
    use std::os::unix::process::ExitStatusExt as _;
    assert_eq!(status.signal(), Some(6), "{status:?}: {stderr}");
    let injected = format!("crash injected at {phase} of checkpoint 3");
    assert!(stderr.contains(&injected), "{stderr}");
    job
}

#[test]
fn kafka_to_kafka_counts_each_word_once_through_kill_9_anywhere() {
    let kills = std::env::var("CONNECTORS_TORTURE_KILLS").map_or(6, |k| k.parse().unwrap());
    supervise("kafka torture", kills, &mut |rng| {
        let input = input_text(LINES);
        let lines = topic_of(&input, 3);
        let out = topic("counts", 2);
        let dir = scratch();
        let mut job = Job::new(&lines, Out::Kafka(&out));
        job.checkpoint_interval_ms = 40 + rng.below(120);
        job.lines_per_second = 4_000;
        let job_file = job.write(&dir);
        Target {
            dir,
            job_file,
            input,
            // Deduplicated by each record's id, once every repeat is checked to be an exact
            // copy: the sink is at least once (a commit repeated by `recover` produces again).
            committed: Box::new(move |_| {
                let (values, repeats) = deduplicated(records(&out));
                eprintln!("kafka torture: {repeats} records produced again, exact copies");
                values
            }),
        }
    });
}

#[test]
fn a_crash_before_or_while_the_sinks_commit_is_produced_again_by_recover_as_copies() {
    for phase in ["published", "sink-committed"] {
        let input = input_text(LINES);
        let lines = topic_of(&input, 3);
        let out = topic("counts", 2);
        let dir = scratch();
        let job_file = Job::new(&lines, Out::Kafka(&out)).write(&dir);
        let crashed = crash_at(&dir, &job_file, phase);
        // Resumed without the job file: the point's own program, connectors and all.
        std::fs::remove_file(&job_file).unwrap();
        dir.start(&["--from", &crashed]).wait_ok();
        let repeats = assert_once_deduplicated(&out, &input);
        eprintln!("{phase}: {repeats} records produced again, exact copies");
        if phase == "sink-committed" {
            // A sink produced checkpoint 3's records before the crash; `recover` produced
            // them again.
            assert!(repeats > 0, "nothing produced again after {phase}");
        }
    }
}

#[test]
fn a_savepoint_resumes_with_the_partitions_moved_to_three_source_and_sink_subtasks() {
    let input = input_text(LINES);
    let lines = topic_of(&input, 3);
    let out = topic("counts", 3);
    let dir = scratch();
    let mut job = Job::new(&lines, Out::Kafka(&out));
    job.sources = 2;
    // Slow enough that the savepoint comes well before the input's end (v2 must see words
    // that v1 did not); the v1 run's sink is at least once, so the wait reads every record.
    job.lines_per_second = 150;
    let job_file = job.write(&dir);
    let running = dir.start(&[&job_file]);
    crate::util::wait_until("some counts committed", || records(&out).len() > 300);
    let savepoint = dir.save_and_stop(running);
    job.sources = 3;
    job.sinks = 3;
    job.counter = "counter_v2";
    let job_file = job.write(&dir);
    let checked = dir.host_ok(&["check", &job_file, "--from", &savepoint]);
    assert!(checked.contains("lines: parallelism 2 -> 3"), "{checked}");
    // Subtask 0 read partitions 0 and 2, subtask 1 partition 1; at 3, partition 2 moves to
    // subtask 2 with its offset.
    let shown = |subtask: u32| {
        let prefix = format!("lines[{subtask}]  topic `{lines}`: ");
        let line = checked
            .lines()
            .find_map(|l| l.trim().strip_prefix(prefix.as_str()));
        line.unwrap_or_else(|| panic!("{checked}")).to_owned()
    };
    assert!(
        shown(0).starts_with("partition 0 offset ") && shown(0).contains(", partition 2 offset "),
        "{checked}"
    );
    assert!(shown(1).starts_with("partition 1 offset "), "{checked}");
    dir.start(&[&job_file, "--from", &savepoint]).wait_ok();
    let (values, _) = deduplicated(records(&out));
    crate::util::assert_v1_then_v2(&values);
    assert_exactly_once(&values, &input);
}

#[test]
fn kafka_to_postgres_counts_each_word_once_through_a_crash() {
    let input = input_text(LINES);
    let lines = topic_of(&input, 3);
    let database = Database::new();
    let dir = scratch();
    let job_file = Job::new(&lines, Out::Postgres(&database)).write(&dir);
    let crashed = crash_at(&dir, &job_file, "metadata-written");
    dir.start(&[&job_file, "--from", &crashed]).wait_ok();
    assert_exactly_once(&database.values(), &input);
    assert_eq!(database.prepared(), Vec::<String>::new());
}

#[test]
fn a_broker_down_or_a_missing_topic_is_named_before_the_job_starts() {
    let input = input_text(50);
    let lines = topic_of(&input, 1);
    let dir = scratch();
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down_port = down.local_addr().unwrap().port();
    drop(down);
    let job_file = Job::new(&lines, Out::Kafka("counts")).write(&dir);
    let up = brokers();
    let text = std::fs::read_to_string(&job_file).unwrap();
    std::fs::write(
        &job_file,
        text.replace(&up, &format!("127.0.0.1:{down_port}")),
    )
    .unwrap();
    let at = format!("cannot connect to kafka://127.0.0.1:{down_port} (3 attempts)");
    let refused = dir.refused(
        &["run", &job_file],
        &["operator `", &at, "Connection refused"],
    );
    eprintln!("broker down: {refused}");
    let missing = unique("missing");
    let job_file = Job::new(&lines, Out::Kafka(&missing)).write(&dir);
    let named = format!("topic `{missing}` does not exist on {up}");
    let refused = dir.refused(&["run", &job_file], &["operator `sink`", &named]);
    eprintln!("sink's topic missing: {refused}");
    let job_file = Job::new(&missing, Out::Kafka(&lines)).write(&dir);
    let refused = dir.refused(&["run", &job_file], &["operator `lines`", &named]);
    eprintln!("source's topic missing: {refused}");
}
