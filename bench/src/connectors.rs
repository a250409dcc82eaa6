//! Connectors (issue 33), against real servers ([`crate::servers`]), each job run as a user
//! runs it (`host run`, a separate process) and each baseline in this process through the same
//! client crate the host's connector uses:
//!
//! 1. JetStream source -> null sink: the stream's messages (64-byte payloads) read to its end
//!    (`stop_at_end`), `host run` from its start to its exit, against an async-nats ordered
//!    consumer in this process reading the same stream from its first message to its last
//!    (`nats bench` is not installed here: this is its stand-in, labelled so).
//! 2. The PostgreSQL sink at a 1 s checkpoint interval: generator -> forward -> postgres sink
//!    (two-phase commit per checkpoint), `host run` from its start to its exit (every row
//!    committed), against `COPY ... FROM STDIN` (tokio-postgres) of the same rows into a table
//!    of the same columns.
//! 3. End-to-end latency at a 1 s checkpoint interval: JetStream source -> forward -> postgres
//!    sink running; messages published one by one (each acknowledged) at a steady rate; a poll
//!    of the table's row count every 5 ms sees each row arrive (one source and one sink subtask:
//!    rows commit in stream order, so the count tells which are visible); latency from just
//!    before a message's publish to the first poll that sees its row.
//!
//! When the servers cannot be installed or started, every row is skipped with a line saying why.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, consumer::pull::OrderedConfig, stream};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};

use crate::jobs::{edge, generator_key};
use crate::process::{HostHome, host_binary, host_run};
use crate::servers::Servers;
use crate::{Row, Sizes};

/// The benchmark's database on the server.
const DATABASE: &str = "bench";
/// Bytes of each message's payload.
const PAYLOAD_BYTES: usize = 64;

/// Every connector row, or none with a line saying why the servers could not start.
pub fn connectors(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("connectors");
    std::fs::create_dir_all(&dir)?;
    let target_dir = scratch
        .parent()
        .context("the scratch folder has a parent")?;
    // Under the target dir, as the tests' (which remove it once this process is gone): the
    // database server's user must reach it, and the scratch folder is this user's only.
    let data = target_dir
        .join("servers")
        .join(std::process::id().to_string());
    let servers = match Servers::start(&data, target_dir) {
        Ok(servers) => servers,
        Err(e) => {
            let line = format!("bench: the connector rows are skipped: {e:#}");
            eprintln!("{line}");
            println!("{line}\n");
            return Ok(Vec::new());
        }
    };
    servers.psql("postgres", &format!("CREATE DATABASE {DATABASE}"))?;
    let runtime = tokio::runtime::Runtime::new()?;
    let bench = Bench {
        guests,
        dir: &dir,
        servers: &servers,
        sizes,
    };
    let mut rows = vec![runtime.block_on(bench.jetstream_throughput())?];
    rows.push(runtime.block_on(bench.postgres_sink())?);
    rows.extend(runtime.block_on(bench.latency())?);
    Ok(rows)
}

/// What the connector rows work with.
struct Bench<'a> {
    guests: &'a Path,
    dir: &'a Path,
    servers: &'a Servers,
    sizes: Sizes,
}

/// A payload of [`PAYLOAD_BYTES`] bytes naming message `i`.
fn payload(i: usize) -> Bytes {
    let mut text = format!("message {i} ");
    text.extend(std::iter::repeat_n(
        '.',
        PAYLOAD_BYTES.saturating_sub(text.len()),
    ));
    Bytes::from(text)
}

impl Bench<'_> {
    async fn jetstream(&self) -> anyhow::Result<jetstream::Context> {
        let client = async_nats::connect(self.servers.nats_url()).await?;
        Ok(jetstream::new(client))
    }

    /// Creates stream `name` on subject `name.in`; publishes `count` payloads, acknowledged.
    async fn stream_of(
        &self,
        js: &jetstream::Context,
        name: &str,
        count: usize,
    ) -> anyhow::Result<()> {
        let config = stream::Config {
            name: name.to_owned(),
            subjects: vec![format!("{name}.in")],
            ..Default::default()
        };
        js.create_stream(config).await?;
        let mut acks = Vec::with_capacity(1_000);
        for i in 0..count {
            acks.push(js.publish(format!("{name}.in"), payload(i)).await?);
            if acks.len() == 1_000 || i + 1 == count {
                for ack in acks.drain(..) {
                    ack.await?;
                }
            }
        }
        Ok(())
    }

    /// The job file of a NATS source (reading `stream` to its end if `stop_at_end`) into
    /// `sink` (an operator's extra lines, `module` or `connector` included).
    fn nats_job(&self, stream: &str, stop_at_end: bool, interval_ms: u64, sink: &str) -> String {
        let source = format!(
            "connector = \"nats\"\nconfig = {{ url = \"{}\", stream = \"{stream}\", subjects = \
             [\"{stream}.in\"], stop_at_end = {stop_at_end} }}",
            self.servers.nats_url()
        );
        format!("checkpoint_interval_ms = {interval_ms}\n")
            + &source_operator("lines", &source)
            + &sink_operator(sink)
            + &edge("lines", "sink", "forward")
    }

    /// A postgres sink's lines, into `table`.
    fn postgres_sink_lines(&self, table: &str) -> String {
        format!(
            "connector = \"postgres\"\nconfig = {{ url = \"{}\", table = \"{table}\" }}",
            self.servers.postgres_url(DATABASE)
        )
    }

    /// JetStream source -> null sink against an ordered consumer of the same stream.
    async fn jetstream_throughput(&self) -> anyhow::Result<Row> {
        let count = self.sizes.stream_messages;
        let js = self.jetstream().await?;
        self.stream_of(&js, "THROUGHPUT", count).await?;
        let null_sink = format!(
            "module = \"{}\"",
            self.guests.join("null_sink.wasm").display()
        );
        let file = self.dir.join("throughput.toml");
        std::fs::write(&file, self.nats_job("THROUGHPUT", true, 0, &null_sink))?;
        let home = self.dir.join("home");
        // Unmeasured: compiles the null sink into the cache.
        host_run(&home, &file, &[])?;
        let (mut hosted, mut consumed) = (Vec::new(), Vec::new());
        for _ in 0..self.sizes.repetitions.min(3) {
            hosted.push(host_run(&home, &file, &[])?);
            consumed.push(consume(&js, "THROUGHPUT", count).await?);
        }
        let rate = |d: &Duration| count as f64 / d.as_secs_f64();
        let host = rate(hosted.iter().min().context("a run")?);
        let baseline = rate(consumed.iter().min().context("a run")?);
        Ok(Row {
            name: format!(
                "JetStream source -> null sink, {} k messages of {PAYLOAD_BYTES} bytes read to \
                 the stream's end: `host run` from its start to its exit (process start-up \
                 included, modules cached), fastest of {}",
                count / 1_000,
                hosted.len()
            ),
            value: host,
            unit: "messages/s",
            baseline: Some(baseline),
            baseline_name: "an async-nats ordered consumer in the bench process reading the \
                            same stream, first message to last (`nats bench` is not installed \
                            here)",
            ratio: Some(host / baseline),
            target: "≥ 0.8× the consumer",
            met: Some(host / baseline >= 0.8),
        })
    }
}

/// A source operator with `extra` lines (its connector and config).
fn source_operator(id: &str, extra: &str) -> String {
    format!("[[operators]]\nid = \"{id}\"\nrole = \"source\"\nparallelism = 1\n{extra}\n")
}

/// The sink operator `sink` with `extra` lines (its module, or connector and config).
fn sink_operator(extra: &str) -> String {
    format!("[[operators]]\nid = \"sink\"\nrole = \"sink\"\nparallelism = 1\n{extra}\n")
}

/// Reads `stream` from its first message to its `count`-th with an ordered consumer; returns
/// how long that took.
async fn consume(js: &jetstream::Context, stream: &str, count: usize) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let stream = js.get_stream(stream).await?;
    let consumer = stream.create_consumer(OrderedConfig::default()).await?;
    let mut messages = consumer.messages().await?;
    let mut read = 0;
    while read < count {
        let message = messages.next().await.context("the stream ended early")??;
        std::hint::black_box(async_nats::Message::from(message).payload.len());
        read += 1;
    }
    Ok(started.elapsed())
}

impl Bench<'_> {
    /// A client of the benchmark's database, as the superuser.
    async fn postgres(&self) -> anyhow::Result<tokio_postgres::Client> {
        let url = self.servers.postgres_url(DATABASE);
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Creates `table (key text, value text, ts bigint)`, empty.
    async fn table(&self, client: &tokio_postgres::Client, table: &str) -> anyhow::Result<()> {
        let sql = format!(
            "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (key text, value text, ts bigint)"
        );
        Ok(client.batch_execute(&sql).await?)
    }

    /// Rows in `table`.
    async fn rows(&self, client: &tokio_postgres::Client, table: &str) -> anyhow::Result<usize> {
        let sql = format!("SELECT count(*) FROM {table}");
        let row = client.query_one(sql.as_str(), &[]).await?;
        Ok(row.get::<_, i64>(0) as usize)
    }

    /// The generator's records through the postgres sink at 1 s checkpoints, against `COPY`
    /// of the same rows.
    async fn postgres_sink(&self) -> anyhow::Result<Row> {
        let (records, keys) = (self.sizes.sink_rows, self.sizes.distinct_keys);
        let client = self.postgres().await?;
        let generator = format!(
            "module = \"{}\"\nconfig = {{ records = \"{records}\", keys = \"{keys}\" }}",
            self.guests.join("generator.wasm").display()
        );
        let text = "checkpoint_interval_ms = 1000\n".to_owned()
            + &source_operator("lines", &generator)
            + &sink_operator(&self.postgres_sink_lines("sunk"))
            + &edge("lines", "sink", "forward");
        let file = self.dir.join("sink.toml");
        std::fs::write(&file, text)?;
        let home = self.dir.join("home");
        // Unmeasured: compiles the generator into the cache.
        self.table(&client, "sunk").await?;
        host_run(&home, &file, &[])?;
        let (mut sunk, mut copied) = (Vec::new(), Vec::new());
        for _ in 0..self.sizes.repetitions.min(3) {
            self.table(&client, "sunk").await?;
            sunk.push(host_run(&home, &file, &[])?);
            let written = self.rows(&client, "sunk").await?;
            anyhow::ensure!(
                written == records,
                "the sink wrote {written} of {records} rows"
            );
            self.table(&client, "copied").await?;
            copied.push(copy_rows(&client, "copied", records as u64, keys as u64).await?);
        }
        let rate = |d: &Duration| records as f64 / d.as_secs_f64();
        let host = rate(sunk.iter().min().context("a run")?);
        let baseline = rate(copied.iter().min().context("a run")?);
        Ok(Row {
            name: format!(
                "PostgreSQL sink, {} k rows (generator -> sink, checkpoints every 1 s, a \
                 prepared transaction each): `host run` from its start to its exit, every row \
                 committed (modules cached), fastest of {}",
                records / 1_000,
                sunk.len()
            ),
            value: host,
            unit: "rows/s",
            baseline: Some(baseline),
            baseline_name: "`COPY ... FROM STDIN` of the same rows (tokio-postgres, one \
                            statement) into a table of the same columns",
            ratio: Some(host / baseline),
            target: "≥ 0.5× COPY",
            met: Some(host / baseline >= 0.5),
        })
    }
}

/// `COPY`s the generator's `records` rows (key, empty value, timestamp `i`) into `table`;
/// returns how long that took.
async fn copy_rows(
    client: &tokio_postgres::Client,
    table: &str,
    records: u64,
    keys: u64,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let sql = format!("COPY {table} (key, value, ts) FROM STDIN");
    let sink = client.copy_in::<_, Bytes>(sql.as_str()).await?;
    futures::pin_mut!(sink);
    let (mut state, mut key, mut chunk) = (0x2545_f491_4f6c_dd1d_u64, Vec::new(), Vec::new());
    for i in 0..records {
        generator_key(&mut state, keys, &mut key);
        chunk.extend_from_slice(&key);
        chunk.extend_from_slice(b"\t\t");
        chunk.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        chunk.push(b'\n');
        if chunk.len() >= 1 << 16 {
            sink.send(Bytes::from(std::mem::take(&mut chunk))).await?;
        }
    }
    sink.send(Bytes::from(chunk)).await?;
    let copied = sink.as_mut().finish().await?;
    anyhow::ensure!(copied == records, "COPY wrote {copied} of {records} rows");
    Ok(started.elapsed())
}

impl Bench<'_> {
    /// Latency from publish to a visible row, through a running JetStream -> postgres job.
    async fn latency(&self) -> anyhow::Result<Vec<Row>> {
        let count = self.sizes.latency_messages;
        let js = self.jetstream().await?;
        let client = self.postgres().await?;
        self.table(&client, "latency").await?;
        // One message first: the job is running and its connections open once its row shows.
        self.stream_of(&js, "LATENCY", 1).await?;
        let file = self.dir.join("latency.toml");
        let sink = self.postgres_sink_lines("latency");
        std::fs::write(&file, self.nats_job("LATENCY", false, 1_000, &sink))?;
        let home = HostHome::new(&host_binary()?, self.dir.join("home"));
        let mut running = home.run(&file, None)?;
        running.job_id()?;
        let deadline = Instant::now() + crate::process::PATIENCE;
        while self.rows(&client, "latency").await? < 1 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the latency job wrote no first row"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let publishing = tokio::spawn(publish_steadily(js, count, self.sizes.latency_rate));
        let visible = watch_rows(&client, count).await?;
        let published = publishing.await??;
        running.terminate()?;
        let mut latencies: Vec<f64> = published
            .iter()
            .zip(&visible)
            .map(|(p, v)| v.saturating_duration_since(*p).as_secs_f64() * 1e3)
            .collect();
        latencies.sort_by(f64::total_cmp);
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
        let rate = self.sizes.latency_rate;
        let row = |p: &str, value: f64| Row {
            name: format!(
                "end-to-end latency {p}, JetStream -> postgres sink, checkpoints every 1 s: \
                 from just before a message's publish to the first poll of the table (every \
                 5 ms) that sees its row; {count} messages at {rate}/s, one subtask each"
            ),
            value,
            unit: "ms",
            baseline: None,
            baseline_name: "",
            ratio: None,
            target: "",
            met: None,
        };
        Ok(vec![row("p50", at(0.5)), row("p99", at(0.99))])
    }
}

/// Publishes `count` messages to `LATENCY.in`, one every 1/`rate` s, each acknowledged before
/// the next; returns the moment just before each publish.
async fn publish_steadily(
    js: jetstream::Context,
    count: usize,
    rate: u64,
) -> anyhow::Result<Vec<Instant>> {
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut published = Vec::with_capacity(count);
    for i in 0..count {
        ticks.tick().await;
        published.push(Instant::now());
        js.publish("LATENCY.in", payload(i)).await?.await?;
    }
    Ok(published)
}

/// Polls the latency table's row count every 5 ms until `count` rows past the first are
/// visible; returns, for each, the moment of the poll that first saw it.
async fn watch_rows(client: &tokio_postgres::Client, count: usize) -> anyhow::Result<Vec<Instant>> {
    let mut visible = Vec::with_capacity(count);
    let deadline = Instant::now() + crate::process::PATIENCE;
    while visible.len() < count {
        let row = client
            .query_one("SELECT count(*) FROM latency", &[])
            .await?;
        let now = Instant::now();
        let seen = (row.get::<_, i64>(0) as usize).saturating_sub(1).min(count);
        visible.resize(seen.max(visible.len()), now);
        anyhow::ensure!(
            now < deadline,
            "only {} of {count} rows became visible",
            visible.len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(visible)
}
