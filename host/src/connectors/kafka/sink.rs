//! The Kafka sink: keeps the records of each checkpoint (its state), and produces them once
//! the checkpoint is complete (`commit`), in one Kafka transaction per subtask and checkpoint.
//!
//! Each subtask produces through its own `transactional.id`, `jh:{prefix}:{subtask}` (`prefix`
//! names the sink, not a run: `{operator}.{topic}` unless `transactional_id_prefix` says
//! otherwise), so that a new producer of the same subtask, in a resumed or restarted job,
//! fences the producer of a run that is gone (a zombie): the broker refuses its writes, and
//! aborts the transaction it left open. The transaction that produces checkpoint `n`'s
//! records also commits, as the offset of a consumer group of the sink's own
//! (`jh:{prefix}:{subtask}`, on the topic's partition 0), `n` with the job's id as metadata:
//! the records and that marker become visible together, or not at all.
//!
//! Recovery (`recover`, when a restored job starts): for every old subtask it owns (old `j`
//! belongs to new `j % parallelism`), it starts a producer with old `j`'s id (which aborts
//! what a crashed `j` left open), reads old `j`'s marker, and produces, each in a transaction
//! of its own, what the restored checkpoint kept and the marker does not show committed. A
//! commit repeated after a crash thus writes nothing twice. librdkafka cannot resume another
//! producer's transaction (Flink's KafkaSink does, with the Java client's producer id and
//! epoch): that is why records wait in the checkpoint, not in an open transaction.

use std::collections::BTreeMap;
use std::sync::Arc;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer as _};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::super::config::KafkaSink;
use super::super::state::{self, StateError};
use super::super::{Cause, Setup, owns_old};
use super::CALL_TIMEOUT;
use crate::engine::bindings::Batch;
use crate::runtime::partition::columns;

/// Its name, as points record it.
pub const NAME: &str = "jobhost:kafka-sink";
/// Its state format ([`State`]).
pub const STATE_VERSION: u8 = 1;
/// Most bytes of records a subtask keeps between two checkpoints.
pub const BUFFER_BYTES_MAX: u64 = 256 << 20;
/// Records handed to librdkafka before their deliveries are awaited.
pub const PRODUCE_IN_FLIGHT_MAX: usize = 10_000;
/// The header each record carries: `{job}:{operator}:{subtask}:{checkpoint}:{index}`, the
/// same when a commit is repeated, for consumers of brokers that do not hide aborted records.
pub const ID_HEADER: &str = "jobhost-id";

/// One record kept.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Its key (empty: none).
    pub key: ByteBuf,
    /// Its value.
    pub value: ByteBuf,
    /// Its timestamp, milliseconds since the Unix epoch.
    pub timestamp: i64,
}

/// The records a checkpoint kept, not yet produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// The job that kept them.
    pub job: String,
    /// The subtask that kept them.
    pub subtask: u32,
    /// The checkpoint they belong to.
    pub checkpoint: u64,
    /// The records.
    pub records: Vec<Record>,
}

/// A subtask's state: which subtask it is, and what it kept and has not produced.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The subtask whose state this is.
    pub subtask: u32,
    /// The prefix of its transactional ids.
    pub prefix: String,
    /// Oldest first.
    pub kept: Vec<Kept>,
}

/// A transactional producer of one subtask's id, and the consumer whose group holds its marker.
struct Writer {
    producer: FutureProducer,
    marker: Arc<BaseConsumer>,
}

/// One subtask of the sink.
pub struct Sink {
    client: rdkafka::ClientConfig,
    topic: String,
    prefix: String,
    job: String,
    operator: String,
    index: u32,
    parallelism: u32,
    /// Old subtasks whose work it took over at a restore (its own index included, if it was one).
    owned: Vec<u32>,
    /// By subtask whose id they produce as: started on first use.
    writers: BTreeMap<u32, Writer>,
    /// Records since the last checkpoint, and their bytes.
    open: Vec<Record>,
    open_bytes: u64,
    /// Kept for checkpoints, not yet produced.
    kept: Vec<Kept>,
}

impl Sink {
    /// Connects and checks that the topic exists. Its producers start (fencing earlier ones
    /// of their ids) at `recover` or at its first commit, not here: `host check` opens a
    /// connector too, and must not fence a running job.
    pub(in crate::connectors) async fn open(
        setup: &Setup<'_>,
        config: &KafkaSink,
    ) -> Result<Sink, Cause> {
        let client = super::client_config(setup, &config.brokers, &config.auth);
        let probe = Arc::new(super::consumer(client.clone(), "jobhost")?);
        super::partitions(&probe, &config.brokers, &config.topic).await?;
        let operator = setup.subtask.operator.to_string();
        let prefix = config
            .transactional_id_prefix
            .clone()
            .unwrap_or_else(|| format!("{operator}.{}", config.topic));
        Ok(Sink {
            client,
            topic: config.topic.clone(),
            prefix,
            job: setup.job.to_string(),
            operator,
            index: setup.subtask.index,
            parallelism: setup.parallelism,
            owned: Vec::new(),
            writers: BTreeMap::new(),
            open: Vec::new(),
            open_bytes: 0,
            kept: Vec::new(),
        })
    }

    /// What it kept and has not produced, encoded.
    pub(in crate::connectors) fn snapshot(&self, _checkpoint: u64) -> Vec<u8> {
        let state = State {
            subtask: self.index,
            prefix: self.prefix.clone(),
            kept: self.kept.clone(),
        };
        state::encode(STATE_VERSION, &state)
    }

    /// Takes over the old subtasks it succeeds (old `j` for new `j % parallelism`), and what
    /// they kept.
    pub(in crate::connectors) fn restore(&mut self, states: &[&[u8]]) -> Result<(), StateError> {
        for bytes in states {
            let old: State = state::decode(STATE_VERSION, bytes)?;
            if !owns_old(self.index, self.parallelism, old.subtask) {
                continue;
            }
            self.owned.push(old.subtask);
            self.kept.extend(old.kept);
        }
        self.kept.sort_by_key(|k| (k.checkpoint, k.subtask));
        Ok(())
    }

    /// Keeps a batch's records for the next checkpoint.
    pub(in crate::connectors) fn write(&mut self, batch: &Batch) -> Result<(), Cause> {
        let records = jobhost_batch::Records::of_checked(columns(batch));
        for record in records {
            self.open_bytes += (record.key.len() + record.value.len()) as u64;
            self.open.push(Record {
                key: ByteBuf::from(record.key),
                value: ByteBuf::from(record.value),
                timestamp: record.timestamp,
            });
        }
        if self.open_bytes > BUFFER_BYTES_MAX {
            return Err(Cause::Buffer {
                bytes: self.open_bytes,
                max: BUFFER_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// Keeps what was written since the last checkpoint as checkpoint `checkpoint`'s.
    pub(in crate::connectors) fn prepare_commit(&mut self, checkpoint: u64) {
        if self.open.is_empty() {
            return;
        }
        self.open_bytes = 0;
        self.kept.push(Kept {
            job: self.job.clone(),
            subtask: self.index,
            checkpoint,
            records: std::mem::take(&mut self.open),
        });
    }

    /// Produces what checkpoint `checkpoint` and earlier ones kept, a transaction each.
    pub(in crate::connectors) async fn commit(&mut self, checkpoint: u64) -> Result<(), Cause> {
        while self
            .kept
            .first()
            .is_some_and(|k| k.checkpoint <= checkpoint)
        {
            let kept = self.kept.remove(0);
            if let Err(cause) = self.produce(&kept).await {
                self.kept.insert(0, kept);
                return Err(cause);
            }
        }
        Ok(())
    }

    /// Fences the old subtasks it owns, and produces what they kept that their markers do
    /// not show committed.
    pub(in crate::connectors) async fn recover(&mut self) -> Result<(), Cause> {
        let mut olds = std::mem::take(&mut self.owned);
        olds.extend(self.kept.iter().map(|k| k.subtask));
        olds.sort_unstable();
        olds.dedup();
        for old in olds {
            self.writer(old).await?;
            let (job, committed) = self.committed(old).await?;
            self.kept.retain(|k| {
                let done = k.subtask == old && k.job == job && k.checkpoint <= committed;
                !done
            });
        }
        self.commit(u64::MAX).await
    }

    /// The producer with subtask `subtask`'s id, started (fencing earlier ones) on first use.
    async fn writer(&mut self, subtask: u32) -> Result<&Writer, Cause> {
        if !self.writers.contains_key(&subtask) {
            let id = format!("jh:{}:{subtask}", self.prefix);
            let mut config = self.client.clone();
            config
                .set("transactional.id", &id)
                .set("enable.idempotence", "true")
                .set("transaction.timeout.ms", "60000");
            let producer: FutureProducer = config
                .create()
                .map_err(Cause::kafka("creating a producer"))?;
            let marker = Arc::new(super::consumer(self.client.clone(), &id)?);
            let init = producer.clone();
            let ready = tokio::task::spawn_blocking(move || init.init_transactions(CALL_TIMEOUT));
            let ready = ready.await.expect("init_transactions does not panic");
            ready.map_err(Cause::kafka("starting a transactional producer"))?;
            self.writers.insert(subtask, Writer { producer, marker });
        }
        Ok(&self.writers[&subtask])
    }

    /// The job and checkpoint that old subtask `subtask`'s marker shows committed last (an
    /// empty job and 0: none).
    async fn committed(&mut self, subtask: u32) -> Result<(String, u64), Cause> {
        let marker = self.writer(subtask).await?.marker.clone();
        let mut asked = TopicPartitionList::new();
        asked.add_partition(&self.topic, 0);
        let read =
            tokio::task::spawn_blocking(move || marker.committed_offsets(asked, CALL_TIMEOUT));
        let read = read.await.expect("reading offsets does not panic");
        let read = read.map_err(Cause::kafka("reading the sink's committed checkpoint"))?;
        let found = read.find_partition(&self.topic, 0);
        Ok(match found.map(|e| (e.offset(), e.metadata().to_owned())) {
            Some((Offset::Offset(checkpoint), job)) => (job, checkpoint.max(0) as u64),
            _ => (String::new(), 0),
        })
    }

    /// Produces one checkpoint's records in a transaction of the id of the subtask that kept
    /// them, with its marker, and commits it.
    async fn produce(&mut self, kept: &Kept) -> Result<(), Cause> {
        let (topic, operator) = (self.topic.clone(), self.operator.clone());
        let writer = self.writer(kept.subtask).await?;
        let producer = writer.producer.clone();
        let group = writer.marker.group_metadata();
        let group = group.ok_or_else(|| Cause::Kafka {
            doing: "reading the sink's group",
            reason: super::super::Chain(Box::from("the marker consumer has no group")),
        })?;
        producer
            .begin_transaction()
            .map_err(Cause::kafka("beginning a transaction"))?;
        let ids = format!(
            "{}:{operator}:{}:{}",
            kept.job, kept.subtask, kept.checkpoint
        );
        for (chunk, records) in kept.records.chunks(PRODUCE_IN_FLIGHT_MAX).enumerate() {
            let mut deliveries: Vec<DeliveryFuture> = Vec::with_capacity(records.len());
            for (i, record) in records.iter().enumerate() {
                let id = format!("{ids}:{}", chunk * PRODUCE_IN_FLIGHT_MAX + i);
                let headers = OwnedHeaders::new().insert(Header {
                    key: ID_HEADER,
                    value: Some(id.as_str()),
                });
                let mut out = FutureRecord::to(&topic)
                    .payload(record.value.as_slice())
                    .headers(headers)
                    .timestamp(record.timestamp);
                if !record.key.is_empty() {
                    out = out.key(record.key.as_slice());
                }
                let sent = producer.send_result(out).map_err(|(e, _)| e);
                deliveries.push(sent.map_err(Cause::kafka("producing"))?);
            }
            for delivery in deliveries {
                let delivered = delivery.await.map_err(|_| Cause::Kafka {
                    doing: "producing",
                    reason: super::super::Chain(Box::from("the producer went away")),
                })?;
                delivered.map_err(|(e, _)| Cause::kafka("producing")(e))?;
            }
        }
        let mut marker = TopicPartitionList::new();
        let offset = Offset::Offset(kept.checkpoint as i64);
        let added = marker.add_partition_offset(&topic, 0, offset);
        added.map_err(Cause::kafka("marking the checkpoint"))?;
        if let Some(mut element) = marker.find_partition(&topic, 0) {
            element.set_metadata(&kept.job);
        }
        let committed = tokio::task::spawn_blocking(move || {
            producer.send_offsets_to_transaction(&marker, &group, CALL_TIMEOUT)?;
            producer.commit_transaction(CALL_TIMEOUT)
        });
        let committed = committed.await.expect("committing does not panic");
        committed.map_err(Cause::kafka("committing the transaction"))
    }
}

/// What a person reads of a sink's state: the checkpoints it kept records of.
pub fn describe_state(bytes: &[u8]) -> Result<String, StateError> {
    let state: State = state::decode(STATE_VERSION, bytes)?;
    if state.kept.is_empty() {
        return Ok("nothing kept to produce".to_owned());
    }
    let kept: Vec<String> = state
        .kept
        .iter()
        .map(|k| {
            let id = format!("jh:{}:{}", state.prefix, k.subtask);
            format!(
                "checkpoint {} of {} as {id} ({} records)",
                k.checkpoint,
                k.job,
                k.records.len()
            )
        })
        .collect();
    Ok(format!("kept to produce: {}", kept.join(", ")))
}
