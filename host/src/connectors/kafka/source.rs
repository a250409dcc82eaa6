//! The Kafka source: reads a topic's partitions, each from the offset after the one its
//! checkpoint holds (`read_committed`: a transaction's records once it commits). No consumer
//! group and no offsets committed to the broker: the offsets in the checkpoint are the
//! position, nothing the broker keeps.
//!
//! Partition `p` belongs to subtask `p % parallelism`. Each partition has its own position, so
//! that a restore hands each partition, with its position, to its new subtask at any
//! parallelism (every subtask receives every old subtask's state, and keeps its own
//! partitions'). Each record is one message: its key, its value, and its timestamp (the
//! producer's create time, or the broker's append time, in milliseconds since the Unix epoch),
//! so that event time follows the topic. `poll` takes what librdkafka fetched already, without
//! waiting: the subtask's loop is never held up by a quiet topic.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use jobhost_batch::BatchBuilder;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::super::config::KafkaSource;
use super::super::state::{self, StateError};
use super::super::{Cause, Setup};
use crate::engine::bindings::PollResult;
use crate::runtime::partition::into_batch;

/// Its name, as points record it.
pub const NAME: &str = "jobhost:kafka-source";
/// Its state format ([`State`]).
pub const STATE_VERSION: u8 = 1;

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
    consumer: Arc<BaseConsumer>,
    topic: String,
    /// This subtask's partitions, and the offset each emitted last (-1: none).
    positions: BTreeMap<i32, i64>,
    stop_at_end: bool,
    /// Whether its partitions are assigned (from the restored positions) yet.
    assigned: bool,
    /// Partitions read to their end (with `stop_at_end`).
    ended: BTreeSet<i32>,
}

impl Source {
    /// Connects, and finds the topic and its partitions.
    pub(in crate::connectors) async fn open(
        setup: &Setup<'_>,
        config: &KafkaSource,
    ) -> Result<Source, Cause> {
        let mut client = super::client_config(setup, &config.brokers, &config.auth);
        client.set("enable.partition.eof", "true");
        let consumer = Arc::new(super::consumer(client, "jobhost")?);
        let partitions = super::partitions(&consumer, &config.brokers, &config.topic).await?;
        let (index, parallelism) = (setup.subtask.index as i32, setup.parallelism as i32);
        let mine = (0..partitions).filter(|p| p % parallelism == index);
        Ok(Source {
            consumer,
            topic: config.topic.clone(),
            positions: mine.map(|p| (p, -1)).collect(),
            stop_at_end: config.stop_at_end,
            assigned: false,
            ended: BTreeSet::new(),
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
        if !self.assigned {
            self.assign()?;
        }
        let mut batch = BatchBuilder::new();
        while batch.len() < records_max as usize {
            let Some(polled) = self.consumer.poll(std::time::Duration::ZERO) else {
                break;
            };
            let message = match polled {
                Ok(message) => message,
                Err(KafkaError::PartitionEOF(partition)) => {
                    self.ended.insert(partition);
                    continue;
                }
                Err(error) => return Err(Cause::kafka("fetching messages")(error)),
            };
            let at = message.timestamp().to_millis();
            let at = at.unwrap_or_else(now_ms);
            let (key, value) = (
                message.key().unwrap_or(&[]),
                message.payload().unwrap_or(&[]),
            );
            batch.push(key, value, at).map_err(Cause::Batch)?;
            self.positions.insert(message.partition(), message.offset());
        }
        let ended = self.stop_at_end && self.positions.keys().all(|p| self.ended.contains(p));
        if batch.is_empty() && ended {
            return Ok(PollResult::End);
        }
        Ok(PollResult::Records(into_batch(batch.finish(), Vec::new())))
    }

    /// Assigns its partitions, each from the offset after its position.
    fn assign(&mut self) -> Result<(), Cause> {
        let mut assignment = TopicPartitionList::new();
        for (&partition, &last) in &self.positions {
            let offset = match last {
                -1 => Offset::Beginning,
                last => Offset::Offset(last + 1),
            };
            let added = assignment.add_partition_offset(&self.topic, partition, offset);
            added.map_err(Cause::kafka("assigning partitions"))?;
        }
        let assigned = self.consumer.assign(&assignment);
        assigned.map_err(Cause::kafka("assigning partitions"))?;
        self.assigned = true;
        Ok(())
    }
}

/// Now, in milliseconds since the Unix epoch: the timestamp of a message that has none.
fn now_ms() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as i64)
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
