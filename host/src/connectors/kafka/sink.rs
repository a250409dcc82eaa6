//! The Kafka sink, at least once: keeps the records of each checkpoint (its state), and
//! produces them once the checkpoint is complete (`commit`). Each record carries a header,
//! [`ID_HEADER`], `{job}:{operator}:{subtask}:{checkpoint}:{index}` (the scheme of the NATS
//! sink's `Nats-Msg-Id`), and goes, with its key, to the partition its key (or, without one,
//! its id) hashes to ([`super::partitioner`]).
//!
//! Recovery (`recover`, when a restored job starts) produces again everything the restored
//! checkpoint kept: a commit that a crash cut short, or that completed but was not yet
//! recorded, is repeated. What it produces again is an exact copy (same key, value, timestamp,
//! id and partition) of what may already be there, which a consumer that deduplicates by the
//! id header, or a compacted topic (by key), removes. No Kafka transactions: the brokers this
//! host is tested against (tansu 0.6.0) have none (no `EndTxn`), so a consumer can see a
//! commit's records before all of them are produced, and duplicates after a crash
//! (docs/connectors.md says what is and is not guaranteed).
//!
//! A restore at another parallelism hands each old subtask's kept records to exactly one new
//! subtask (old `j` to new `j % parallelism`), which produces them under their original ids.

use std::collections::BTreeMap;

use rskafka::client::partition::{Compression, PartitionClient};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::super::config::KafkaSink;
use super::super::kept::{self, Keeper};
use super::super::state::StateError;
use super::super::{Cause, Setup};
use super::partitioner::partition_of;
use crate::engine::bindings::Batch;
use crate::runtime::partition::columns;

/// Its name, as points record it.
pub const NAME: &str = "jobhost:kafka-sink";
/// Its state format ([`kept::State`] of [`Record`]s): 2 since the sink is at least once (1 was the transactional
/// sink's, with its transactional ids' prefix).
pub const STATE_VERSION: u8 = 2;
/// Most bytes of records (keys, values, ids) in one produce request.
pub const PRODUCE_BYTES_MAX: usize = 512 << 10;
/// The header each record carries: `{job}:{operator}:{subtask}:{checkpoint}:{index}`, the
/// same when a commit is repeated.
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
type Kept = kept::Kept<Record>;

/// One subtask of the sink.
pub struct Sink {
    /// The topic's partitions, by index.
    partitions: Vec<PartitionClient>,
    /// Records since the last checkpoint, and kept for checkpoints, not yet produced.
    keeper: Keeper<Record>,
}

impl Sink {
    /// Connects, checks that the topic exists, and connects to its partitions' leaders.
    pub(in crate::connectors) async fn open(
        setup: &Setup<'_>,
        config: &KafkaSink,
    ) -> Result<Sink, Cause> {
        let client = super::client(setup, &config.brokers, &config.auth).await?;
        let count = super::partitions(&client, &config.brokers, &config.topic).await?;
        let mut partitions = Vec::with_capacity(count as usize);
        for p in 0..count {
            partitions.push(super::partition(&client, &config.topic, p).await?);
        }
        Ok(Sink {
            partitions,
            keeper: Keeper::new(setup),
        })
    }

    /// What it kept and has not produced, encoded.
    pub(in crate::connectors) fn snapshot(&self, _checkpoint: u64) -> Vec<u8> {
        self.keeper.snapshot(STATE_VERSION)
    }

    /// Takes over what the old subtasks it succeeds kept (old `j` for new `j % parallelism`).
    pub(in crate::connectors) fn restore(&mut self, states: &[&[u8]]) -> Result<(), StateError> {
        self.keeper.restore(STATE_VERSION, states)
    }

    /// Keeps a batch's records for the next checkpoint.
    pub(in crate::connectors) fn write(&mut self, batch: &Batch) -> Result<(), Cause> {
        for record in jobhost_batch::Records::of_checked(columns(batch)) {
            let bytes = record.key.len() + record.value.len();
            let kept = Record {
                key: ByteBuf::from(record.key),
                value: ByteBuf::from(record.value),
                timestamp: record.timestamp,
            };
            self.keeper.push(kept, bytes);
        }
        self.keeper.check_bound()
    }

    /// Keeps what was written since the last checkpoint as checkpoint `checkpoint`'s.
    pub(in crate::connectors) fn prepare_commit(&mut self, checkpoint: u64) {
        self.keeper.prepare_commit(checkpoint);
    }

    /// Produces what checkpoint `checkpoint` and earlier ones kept.
    pub(in crate::connectors) async fn commit(&mut self, checkpoint: u64) -> Result<(), Cause> {
        while let Some(kept) = self.keeper.next_due(checkpoint) {
            self.produce(kept).await?;
            self.keeper.committed_next();
        }
        Ok(())
    }

    /// Produces again everything the restored checkpoint kept: what a crash left half
    /// produced, or produced and not recorded, is produced again as exact copies.
    pub(in crate::connectors) async fn recover(&mut self) -> Result<(), Cause> {
        self.commit(u64::MAX).await
    }

    /// Produces one checkpoint's records, each partition's in order, the partitions at once,
    /// and waits for the brokers to acknowledge them all.
    async fn produce(&self, kept: &Kept) -> Result<(), Cause> {
        let by_partition = records_of(kept, self.partitions.len() as i32);
        let produced = by_partition.into_iter().map(|(partition, records)| {
            produce_in_order(&self.partitions[partition as usize], records)
        });
        futures::future::try_join_all(produced).await?;
        Ok(())
    }
}

/// A checkpoint's records as Kafka records with their ids, by partition, in order.
fn records_of(kept: &Kept, partitions: i32) -> BTreeMap<i32, Vec<rskafka::record::Record>> {
    let mut by_partition: BTreeMap<i32, Vec<rskafka::record::Record>> = BTreeMap::new();
    for (index, record) in kept.records.iter().enumerate() {
        let id = format!("{}:{index}", kept.ids);
        let placed_by = match record.key.is_empty() {
            true => id.as_bytes(),
            false => record.key.as_slice(),
        };
        let timestamp = chrono::DateTime::from_timestamp_millis(record.timestamp);
        let out = rskafka::record::Record {
            key: (!record.key.is_empty()).then(|| record.key.to_vec()),
            value: Some(record.value.to_vec()),
            headers: BTreeMap::from([(ID_HEADER.to_owned(), id.clone().into_bytes())]),
            timestamp: timestamp.unwrap_or(chrono::DateTime::UNIX_EPOCH),
        };
        let partition = partition_of(placed_by, partitions);
        by_partition.entry(partition).or_default().push(out);
    }
    by_partition
}

/// Produces `records` to `partition` in order, [`PRODUCE_BYTES_MAX`] at most per request.
async fn produce_in_order(
    partition: &PartitionClient,
    records: Vec<rskafka::record::Record>,
) -> Result<(), Cause> {
    let mut request = Vec::new();
    let mut bytes = 0;
    for record in records {
        let size = record.approximate_size();
        if !request.is_empty() && bytes + size > PRODUCE_BYTES_MAX {
            let full = std::mem::take(&mut request);
            let sent = partition.produce(full, Compression::NoCompression).await;
            sent.map_err(Cause::kafka("producing"))?;
            bytes = 0;
        }
        bytes += size;
        request.push(record);
    }
    let sent = partition.produce(request, Compression::NoCompression).await;
    sent.map_err(Cause::kafka("producing"))?;
    Ok(())
}

/// What a person reads of a sink's state: the checkpoints it kept records of.
pub fn describe_state(bytes: &[u8]) -> Result<String, StateError> {
    kept::describe::<Record>(STATE_VERSION, bytes, "produce")
}
