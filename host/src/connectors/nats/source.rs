//! The JetStream source: reads a stream in order, from the stream sequence after the one its
//! checkpoint holds, through ordered consumers (ephemeral, no acks: the sequence in the
//! checkpoint is the position, not anything the server keeps).
//!
//! Each record is one message: the subject as key, the payload as value, and the time the
//! server stored it (JetStream's publish time, in milliseconds since the Unix epoch) as
//! timestamp, so that event time follows the stream. With several subject filters, filter `k`
//! belongs to subtask `k % parallelism`; each filter has its own consumer and its own
//! position, so that a restore at another parallelism hands each filter, with its position,
//! to its new subtask (the union of the old states, each subtask keeping its own filters).
//! Messages are fetched by one task per filter into a bounded channel, which `poll` drains
//! without waiting: the subtask's loop is never held up by a quiet stream.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::pull::OrderedConfig;
use async_nats::jetstream::stream::Stream;
use futures::StreamExt as _;
use jobhost_batch::BatchBuilder;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::super::config::NatsSource;
use super::super::state::{self, StateError};
use super::super::{Cause, Setup};
use crate::engine::bindings::PollResult;
use crate::runtime::partition::into_batch;

/// Its name, as points record it.
pub const NAME: &str = "jobhost:nats-source";
/// Its state format ([`State`]).
pub const STATE_VERSION: u8 = 1;
/// Messages fetched ahead of `poll`, per subtask.
pub const PREFETCH_MESSAGES_MAX: usize = 4_096;

/// The position of a subtask: for each of its subject filters (`""` for the whole stream),
/// the stream sequence of the last message it emitted (0: none yet).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The stream.
    pub stream: String,
    /// Filter -> last sequence emitted.
    pub positions: BTreeMap<String, u64>,
}

/// One subtask of the source.
pub struct Source {
    stream: Stream,
    name: String,
    /// This subtask's filters, and the sequence each emitted last.
    positions: BTreeMap<String, u64>,
    stop_at_end: bool,
    /// Started by the first `poll`, once the position is restored.
    fetching: Option<Fetching>,
}

/// What one filter's task hands `poll`.
enum Fetched {
    Message {
        filter: usize,
        sequence: u64,
        published_ms: i64,
        subject: async_nats::Subject,
        payload: bytes::Bytes,
    },
    /// The filter has nothing more (only with `stop_at_end`).
    End,
    Failed(Cause),
}

struct Fetching {
    filters: Vec<String>,
    received: mpsc::Receiver<Fetched>,
    tasks: Vec<JoinHandle<()>>,
    running: usize,
}

impl Drop for Fetching {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

impl Source {
    /// Connects and finds the stream.
    pub(in crate::connectors) async fn open(
        setup: &Setup<'_>,
        config: &NatsSource,
    ) -> Result<Source, Cause> {
        let connected = super::connect(setup, &config.url, &config.auth, &config.stream);
        let (_, stream) = connected.await?;
        let filters: Vec<String> = match config.subjects.is_empty() {
            true => vec![String::new()],
            false => config.subjects.clone(),
        };
        let (index, parallelism) = (setup.subtask.index, setup.parallelism);
        let mine = filters
            .into_iter()
            .enumerate()
            .filter(|(k, _)| *k as u32 % parallelism == index)
            .map(|(_, filter)| (filter, 0));
        Ok(Source {
            stream,
            name: config.stream.clone(),
            positions: mine.collect(),
            stop_at_end: config.stop_at_end,
            fetching: None,
        })
    }

    /// Its position, encoded.
    pub(in crate::connectors) fn snapshot(&self) -> Vec<u8> {
        let state = State {
            stream: self.name.clone(),
            positions: self.positions.clone(),
        };
        state::encode(STATE_VERSION, &state)
    }

    /// Takes the position of each of its filters from the states of the old subtasks.
    pub(in crate::connectors) fn restore(&mut self, states: &[&[u8]]) -> Result<(), StateError> {
        for bytes in states {
            let old: State = state::decode(STATE_VERSION, bytes)?;
            if old.stream != self.name {
                return Err(StateError::Decode {
                    version: STATE_VERSION,
                    reason: format!(
                        "the state is a position in stream `{}`, and this source reads `{}`",
                        old.stream, self.name
                    ),
                });
            }
            for (filter, sequence) in old.positions {
                if let Some(position) = self.positions.get_mut(&filter) {
                    *position = (*position).max(sequence);
                }
            }
        }
        Ok(())
    }

    /// At most `records_max` messages fetched so far (none if none is there yet), or the
    /// end once every filter reached it (`stop_at_end`).
    pub(in crate::connectors) async fn poll(
        &mut self,
        records_max: u32,
    ) -> Result<PollResult, Cause> {
        let fetching = match &mut self.fetching {
            Some(fetching) => fetching,
            None => self.fetching.insert(self.start()),
        };
        let mut batch = BatchBuilder::new();
        while batch.len() < records_max as usize {
            let Ok(fetched) = fetching.received.try_recv() else {
                break;
            };
            match fetched {
                Fetched::Message {
                    filter,
                    sequence,
                    published_ms,
                    subject,
                    payload,
                } => {
                    let pushed = batch.push(subject.as_bytes(), &payload, published_ms);
                    pushed.map_err(Cause::Record)?;
                    let position = self.positions.get_mut(&fetching.filters[filter]);
                    *position.expect("a filter of this subtask") = sequence;
                }
                Fetched::End => fetching.running -= 1,
                Fetched::Failed(cause) => return Err(cause),
            }
        }
        if batch.is_empty() && fetching.running == 0 {
            return Ok(PollResult::End);
        }
        Ok(PollResult::Records(into_batch(batch.finish(), Vec::new())))
    }

    /// One task per filter, fetching from the message after its position.
    fn start(&self) -> Fetching {
        let (sender, received) = mpsc::channel(PREFETCH_MESSAGES_MAX);
        let filters: Vec<String> = self.positions.keys().cloned().collect();
        let tasks = filters
            .iter()
            .enumerate()
            .map(|(index, filter)| {
                let fetch = Fetch {
                    stream: self.stream.clone(),
                    filter: (index, filter.clone()),
                    after: self.positions[filter],
                    stop_at_end: self.stop_at_end,
                    sender: sender.clone(),
                };
                tokio::spawn(fetch.run())
            })
            .collect();
        Fetching {
            running: filters.len(),
            filters,
            received,
            tasks,
        }
    }
}

/// One filter's fetching.
struct Fetch {
    stream: Stream,
    filter: (usize, String),
    /// The sequence of the last message emitted: fetching starts after it.
    after: u64,
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

    /// Sends every message after `after` to `poll`, in stream order; returns at the end of
    /// the stream if `stop_at_end`, else never (unless the receiver is gone).
    async fn fetch(&self) -> Result<(), Cause> {
        let deliver_policy = match self.after {
            0 => DeliverPolicy::All,
            after => DeliverPolicy::ByStartSequence {
                start_sequence: after + 1,
            },
        };
        let config = OrderedConfig {
            filter_subject: self.filter.1.clone(),
            deliver_policy,
            ..OrderedConfig::default()
        };
        let consumer = self.stream.create_consumer(config).await;
        let consumer = consumer.map_err(|e| Cause::nats("creating a consumer")(Box::new(e)))?;
        if self.stop_at_end && consumer.cached_info().num_pending == 0 {
            return Ok(());
        }
        let messages = consumer.messages().await;
        let mut messages = messages.map_err(|e| Cause::nats("fetching messages")(Box::new(e)))?;
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| Cause::nats("fetching a message")(Box::new(e)))?;
            let info = message
                .info()
                .map_err(Cause::nats("reading a message's metadata"))?;
            let (sequence, pending) = (info.stream_sequence, info.pending);
            let published_ms = (info.published.unix_timestamp_nanos() / 1_000_000) as i64;
            let message = async_nats::Message::from(message);
            let fetched = Fetched::Message {
                filter: self.filter.0,
                sequence,
                published_ms,
                subject: message.subject,
                payload: message.payload,
            };
            if self.sender.send(fetched).await.is_err() {
                return Ok(());
            }
            if self.stop_at_end && pending == 0 {
                return Ok(());
            }
        }
        Ok(())
    }
}

/// What a person reads of a source's state: each filter's position.
pub fn describe_state(bytes: &[u8]) -> Result<String, StateError> {
    let state: State = state::decode(STATE_VERSION, bytes)?;
    let positions: Vec<String> = state
        .positions
        .iter()
        .map(|(filter, sequence)| match filter.as_str() {
            "" => format!("sequence {sequence}"),
            filter => format!("`{filter}` sequence {sequence}"),
        })
        .collect();
    Ok(format!(
        "stream `{}`: {}",
        state.stream,
        positions.join(", ")
    ))
}
