//! The Kafka source: reads a topic's partitions, each from the offset after the one its
//! checkpoint holds. No consumer group and no offsets committed to the broker: the offsets in
//! the checkpoint are the position, nothing the broker keeps.
//!
//! Partition `p` belongs to subtask `p % parallelism`. Each partition has its own position, so
//! that a restore hands each partition, with its position, to its new subtask at any
//! parallelism (every subtask receives every old subtask's state, and keeps its own
//! partitions'). Each record is one message: its key, its value, and its timestamp (the
//! producer's create time, or the broker's append time, in milliseconds since the Unix epoch),
//! so that event time follows the topic. Messages are fetched by one task per partition into a
//! bounded channel of its own, which `poll` drains without waiting, a message of each
//! partition in turn: the subtask's loop is never held up by a quiet topic, and no partition
//! waits behind another's backlog. It fetches `read_committed` (rskafka's fetch), uncompressed or
//! Snappy-compressed batches.

use std::collections::BTreeMap;

use jobhost_batch::BatchBuilder;
use rskafka::client::partition::{OffsetAt, PartitionClient};
use rskafka::record::RecordAndOffset;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::config::KafkaSource;
use super::super::state::{self, StateError};
use super::super::{Cause, Setup};
use crate::engine::bindings::PollResult;
use crate::runtime::partition::into_batch;

/// Its name, as points record it.
pub const NAME: &str = "jobhost:kafka-source";
/// Its state format ([`State`]).
pub const STATE_VERSION: u8 = 1;
/// Messages fetched ahead of `poll`, per partition.
pub const PREFETCH_MESSAGES_MAX: usize = 1_024;
/// Most bytes one fetch asks a partition for.
pub const FETCH_BYTES_MAX: i32 = 1 << 20;
/// Longest the broker holds a fetch at the partition's end that finds nothing new.
pub const FETCH_WAIT_MS: i32 = 500;
/// Pause after a fetch that found nothing.
pub const EMPTY_PAUSE_MS: u64 = 20;

/// The position of a subtask: for each of its partitions, the offset of the last message it
/// emitted (none: from the partition's start).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The topic.
    pub topic: String,
    /// Partition -> offset of the last message emitted.
    pub positions: BTreeMap<i32, i64>,
}

/// One subtask of the source.
pub struct Source {
    /// Its partitions' clients, taken by the fetching tasks at the first `poll`.
    clients: Vec<PartitionClient>,
    topic: String,
    /// This subtask's partitions, and the offset each emitted last (-1: none).
    positions: BTreeMap<i32, i64>,
    stop_at_end: bool,
    /// Started by the first `poll`, once the position is restored.
    fetching: Option<Fetching>,
}

/// What one partition's task hands `poll`.
enum Fetched {
    Message {
        partition: i32,
        offset: i64,
        timestamp_ms: i64,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    /// The partition is read to its end (only with `stop_at_end`).
    End,
    Failed(Cause),
}

/// Each partition's channel (none once it ended), taken from in turn, and its task.
struct Fetching {
    received: Vec<Option<mpsc::Receiver<Fetched>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Source {
    /// Connects, and finds the topic, its partitions and their leaders.
    pub(in crate::connectors) async fn open(
        setup: &Setup<'_>,
        config: &KafkaSource,
    ) -> Result<Source, Cause> {
        let client = super::client(setup, &config.brokers, &config.auth).await?;
        let partitions = super::partitions(&client, &config.brokers, &config.topic).await?;
        let (index, parallelism) = (setup.subtask.index as i32, setup.parallelism as i32);
        let mut clients = Vec::new();
        for p in (0..partitions).filter(|p| p % parallelism == index) {
            clients.push(super::partition(&client, &config.topic, p).await?);
        }
        Ok(Source {
            positions: clients.iter().map(|c| (c.partition(), -1)).collect(),
            clients,
            topic: config.topic.clone(),
            stop_at_end: config.stop_at_end,
            fetching: None,
        })
    }

    /// Its position, encoded.
    pub(in crate::connectors) fn snapshot(&self) -> Vec<u8> {
        let state = State {
            topic: self.topic.clone(),
            positions: self.positions.clone(),
        };
        state::encode(STATE_VERSION, &state)
    }

    /// Takes the position of each of its partitions from the states of the old subtasks.
    pub(in crate::connectors) fn restore(&mut self, states: &[&[u8]]) -> Result<(), StateError> {
        for bytes in states {
            let old: State = state::decode(STATE_VERSION, bytes)?;
            if old.topic != self.topic {
                return Err(StateError::Decode {
                    version: STATE_VERSION,
                    reason: format!(
                        "the state is a position in topic `{}`, and this source reads `{}`",
                        old.topic, self.topic
                    ),
                });
            }
            for (partition, offset) in old.positions {
                if let Some(position) = self.positions.get_mut(&partition) {
                    *position = (*position).max(offset);
                }
            }
        }
        Ok(())
    }

    /// At most `records_max` messages fetched so far (none if none is there yet), or the
    /// end once every partition reached it (`stop_at_end`).
    pub(in crate::connectors) async fn poll(
        &mut self,
        records_max: u32,
    ) -> Result<PollResult, Cause> {
        if self.fetching.is_none() {
            self.fetching = Some(self.start());
        }
        let fetching = self.fetching.as_mut().expect("started above");
        let mut batch = BatchBuilder::new();
        // A message from each partition in turn, so that none waits behind another's backlog.
        let mut took = true;
        while took && batch.len() < records_max as usize {
            took = false;
            for channel in &mut fetching.received {
                let Some(fetched) = channel.as_mut().and_then(|r| r.try_recv().ok()) else {
                    continue;
                };
                took = true;
                match fetched {
                    Fetched::Message {
                        partition,
                        offset,
                        timestamp_ms,
                        key,
                        value,
                    } => {
                        batch
                            .push(&key, &value, timestamp_ms)
                            .map_err(Cause::Batch)?;
                        self.positions.insert(partition, offset);
                    }
                    Fetched::End => *channel = None,
                    Fetched::Failed(cause) => return Err(cause),
                }
            }
        }
        if batch.is_empty() && fetching.received.iter().all(Option::is_none) {
            return Ok(PollResult::End);
        }
        Ok(PollResult::Records(into_batch(batch.finish(), Vec::new())))
    }

    /// One task per partition, fetching from the offset after its position.
    fn start(&mut self) -> Fetching {
        let mut fetching = Fetching {
            received: Vec::new(),
            tasks: Vec::new(),
        };
        for client in std::mem::take(&mut self.clients) {
            let (sender, received) = mpsc::channel(PREFETCH_MESSAGES_MAX);
            let fetch = Fetch {
                after: self.positions[&client.partition()],
                client,
                stop_at_end: self.stop_at_end,
                sender,
            };
            fetching.tasks.push(tokio::spawn(fetch.run()));
            fetching.received.push(Some(received));
        }
        fetching
    }
}

/// One partition's fetching.
struct Fetch {
    client: PartitionClient,
    /// The offset of the last message emitted (-1: none): fetching starts after it.
    after: i64,
    stop_at_end: bool,
    sender: mpsc::Sender<Fetched>,
}

impl Fetch {
    async fn run(self) {
        let sender = self.sender.clone();
        let last = match self.fetch().await {
            Ok(()) => Fetched::End,
            Err(cause) => Fetched::Failed(cause),
        };
        let _ = sender.send(last).await;
    }

    /// Sends every message after `after` to `poll`, in offset order; returns at the
    /// partition's end (its high watermark) if `stop_at_end`, else never (unless the receiver
    /// is gone).
    async fn fetch(&self) -> Result<(), Cause> {
        let mut next = match self.after {
            -1 => self.client.get_offset(OffsetAt::Earliest).await,
            after => Ok(after + 1),
        }
        .map_err(Cause::kafka("finding a partition's first offset"))?;
        // The high watermark last seen: a fetch at it waits for new records (up to
        // FETCH_WAIT_MS); a fetch below it asks for what is there, without waiting.
        let mut end = i64::MAX;
        loop {
            let wait_ms = if next >= end { FETCH_WAIT_MS } else { 0 };
            let (records, high_watermark) = self.fetch_at(next, wait_ms).await?;
            end = high_watermark;
            let found_none = records.is_empty();
            for found in records {
                next = found.offset + 1;
                let record = found.record;
                let message = Fetched::Message {
                    partition: self.client.partition(),
                    offset: found.offset,
                    timestamp_ms: record.timestamp.timestamp_millis(),
                    key: record.key.unwrap_or_default(),
                    value: record.value.unwrap_or_default(),
                };
                if self.sender.send(message).await.is_err() {
                    return Ok(());
                }
            }
            if self.stop_at_end && next >= high_watermark {
                return Ok(());
            }
            if found_none {
                // A broker that answers at once rather than holding the fetch is not spun on.
                tokio::time::sleep(std::time::Duration::from_millis(EMPTY_PAUSE_MS)).await;
            }
        }
    }

    /// The records from offset `next` on (some of them), and the partition's high watermark.
    /// A broker that serves only the batches that start at or after the offset asked (tansu
    /// 0.6.0; Kafka serves the batch that holds it) skips the rest of a batch whose middle is
    /// asked for, where a restored position often is. So when what comes back does not start
    /// at `next`, the batch that holds `next` is looked for from earlier offsets (1, 2, 4, ...
    /// back, to the partition's first), and the records before `next` dropped. (On Kafka, that
    /// happens only where offsets have gaps: a compacted topic, transaction markers.)
    async fn fetch_at(
        &self,
        next: i64,
        wait_ms: i32,
    ) -> Result<(Vec<RecordAndOffset>, i64), Cause> {
        let fetch = |from: i64, wait_ms: i32| {
            let fetched = self.client.fetch_records(from, 1..FETCH_BYTES_MAX, wait_ms);
            async { fetched.await.map_err(Cause::kafka("fetching messages")) }
        };
        let (records, high_watermark) = fetch(next, wait_ms).await?;
        if records.first().is_some_and(|r| r.offset == next) || next >= high_watermark {
            return Ok((records, high_watermark));
        }
        let first = self.client.get_offset(OffsetAt::Earliest).await;
        let first = first.map_err(Cause::kafka("finding a partition's first offset"))?;
        let mut back = 1;
        loop {
            let from = (next - back).max(first);
            let (mut records, high_watermark) = fetch(from, 0).await?;
            let from_before = records.first().is_some_and(|r| r.offset < next);
            if from_before || from == first {
                records.retain(|r| r.offset >= next);
                return Ok((records, high_watermark));
            }
            back *= 2;
        }
    }
}

/// What a person reads of a source's state: each partition's offset.
pub fn describe_state(bytes: &[u8]) -> Result<String, StateError> {
    let state: State = state::decode(STATE_VERSION, bytes)?;
    let positions: Vec<String> = state
        .positions
        .iter()
        .map(|(partition, offset)| match offset {
            -1 => format!("partition {partition} from the start"),
            offset => format!("partition {partition} offset {offset}"),
        })
        .collect();
    Ok(format!("topic `{}`: {}", state.topic, positions.join(", ")))
}
