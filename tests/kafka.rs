//! The Kafka connectors against a real Kafka-protocol broker (tansu, started by
//! [`crate::servers::kafka`]): lines produced to a topic, split by the tokenizer, counted by the
//! counter, and produced to another topic by the transactional sink, or written to PostgreSQL;
//! through `kill -9` at random moments and at every phase of a checkpoint (the torture's
//! supervisor), crashes after a checkpoint completed and before (or while) its sinks commit,
//! and a savepoint resumed with the source's partitions moved to a third subtask. Every count
//! is there exactly once. And what cannot work: a broker that is down, a topic that does not
//! exist, each named before the job starts.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers as _;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

use crate::connectors::scratch;
use crate::servers::{Database, PG_PASSWORD_ENV, kafka, unique};
use crate::torture::{Target, supervise};
use crate::util::{Dir, assert_exactly_once, guest, input_text};

const LINES: usize = 2_000;
const TIMEOUT: Duration = Duration::from_secs(30);

/// `127.0.0.1:PORT` of the tests' broker.
fn brokers() -> String {
    format!("127.0.0.1:{}", kafka())
}

fn client() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers());
    config
}

/// A fresh topic of `partitions` partitions.
fn topic(prefix: &str, partitions: i32) -> String {
    let name = unique(prefix);
    let admin: AdminClient<DefaultClientContext> = client().create().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let new = NewTopic::new(&name, partitions, TopicReplication::Fixed(1));
    let created = runtime.block_on(admin.create_topics([&new], &AdminOptions::new()));
    for result in created.unwrap() {
        result.unwrap_or_else(|(topic, code)| panic!("creating {topic}: {code}"));
    }
    name
}

/// A fresh topic of `partitions` partitions holding the input's lines, line `i` in partition
/// `i % partitions`.
fn topic_of(input: &str, partitions: i32) -> String {
    let name = topic("lines", partitions);
    let producer: BaseProducer = client().create().unwrap();
    for (i, line) in input.lines().enumerate() {
        let record = BaseRecord::<(), str>::to(&name)
            .payload(line)
            .partition(i as i32 % partitions);
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(TIMEOUT).unwrap();
    name
}

/// Every committed record of `topic` (`read_committed`): its value and its `jobhost-id`.
fn records(topic: &str) -> Vec<(String, String)> {
    let consumer: BaseConsumer = client()
        .set("group.id", "tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).unwrap();
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment
            .add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&assignment).unwrap();
    let (mut ended, mut out) = (BTreeSet::new(), Vec::new());
    while ended.len() < partitions as usize {
        match consumer.poll(TIMEOUT).expect("a message or the end") {
            Ok(message) => {
                let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
                let headers = message.headers().expect("a jobhost-id header");
                let id = headers.get(0).value.expect("an id");
                out.push((value, String::from_utf8(id.to_vec()).unwrap()));
            }
            Err(KafkaError::PartitionEOF(p)) => {
                ended.insert(p);
            }
            Err(e) => panic!("reading {topic}: {e}"),
        }
    }
    out
}

/// The values of `topic`'s committed records.
fn values(topic: &str) -> Vec<String> {
    records(topic).into_iter().map(|(value, _)| value).collect()
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
    let (_, stderr) = running.wait_status();
    let injected = format!("crash injected at {phase} of checkpoint 3");
    assert!(stderr.contains(&injected), "{stderr}");
    job
}

#[test]
#[ignore = "the transactional sink fails against tansu 0.6.0: librdkafka finds no EndTxn in its ApiVersions (docs/connectors.md)"]
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
            // Deduplicated by each record's `jobhost-id`, for one reason: a `kill -9` while a
            // sink's transaction is open leaves it open, the next run's producer aborts it, and
            // tansu 0.6.0 serves an aborted transaction's records to `read_committed` consumers
            // (its fetch responses list no aborted transactions), which Kafka does not. The
            // tests below crash outside that window and count without deduplicating.
            committed: Box::new(move |_| {
                let mut seen = BTreeSet::new();
                let records = records(&out).into_iter();
                records
                    .filter(|(_, id)| seen.insert(id.clone()))
                    .map(|(v, _)| v)
                    .collect()
            }),
        }
    });
}

#[test]
#[ignore = "the transactional sink fails against tansu 0.6.0: librdkafka finds no EndTxn in its ApiVersions (docs/connectors.md)"]
fn a_crash_before_or_while_the_sinks_commit_is_committed_once_by_recover() {
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
        assert_exactly_once(&values(&out), &input);
    }
}

#[test]
#[ignore = "the transactional sink fails against tansu 0.6.0: librdkafka finds no EndTxn in its ApiVersions (docs/connectors.md)"]
fn a_savepoint_resumes_with_the_partitions_moved_to_three_source_and_sink_subtasks() {
    let input = input_text(LINES);
    let lines = topic_of(&input, 3);
    let out = topic("counts", 3);
    let dir = scratch();
    let mut job = Job::new(&lines, Out::Kafka(&out));
    job.sources = 2;
    job.lines_per_second = 500;
    let job_file = job.write(&dir);
    let running = dir.start(&[&job_file]);
    crate::util::wait_until("some counts committed", || values(&out).len() > 300);
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
    let values = values(&out);
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
    dir.refused(&["run", &job_file], &["operator `", &at]);
    let missing = unique("missing");
    let job_file = Job::new(&lines, Out::Kafka(&missing)).write(&dir);
    let named = format!("topic `{missing}` does not exist on {up}");
    dir.refused(&["run", &job_file], &["operator `sink`", &named]);
}
