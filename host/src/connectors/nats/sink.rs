//! The JetStream sink: keeps the records of each checkpoint, and publishes them once the
//! checkpoint is complete (`commit`), each with a message id (`Nats-Msg-Id`) made of the job,
//! operator, subtask and checkpoint that kept it and its place in that checkpoint, so that a
//! commit repeated after a crash (by `recover`, from the checkpoint's state) is deduplicated
//! by the stream. That holds within the stream's duplicate window: a stream whose window is
//! shorter than `duplicate_window_min_ms` is refused at start.
//!
//! The records kept for a checkpoint are the sink's operator state until they are published:
//! a restore at another parallelism hands each old subtask's to exactly one new subtask (old
//! `j` to new `j % parallelism`), which publishes them under their original ids.

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::super::config::NatsSink;
use super::super::state::{self, StateError};
use super::super::{Cause, Setup, owns_old};
use crate::engine::bindings::Batch;
use crate::runtime::partition::columns;

/// Its name, as points record it.
pub const NAME: &str = "jobhost:nats-sink";
/// Its state format ([`State`]).
pub const STATE_VERSION: u8 = 1;
/// Most bytes of records a subtask keeps between two checkpoints.
pub const BUFFER_BYTES_MAX: u64 = 256 << 20;
/// Messages published before their acknowledgements are awaited.
pub const PUBLISH_IN_FLIGHT_MAX: usize = 1_024;

/// The records a checkpoint kept, not yet published.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    /// `job:operator:subtask:checkpoint`: record `i`'s message id is `{ids}:{i}`.
    pub ids: String,
    /// The subtask that kept them.
    pub subtask: u32,
    /// The checkpoint they belong to.
    pub checkpoint: u64,
    /// Their values, the messages' payloads.
    pub records: Vec<ByteBuf>,
}

/// A subtask's state: what it kept and has not published.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Oldest first.
    pub kept: Vec<Kept>,
}

/// One subtask of the sink.
pub struct Sink {
    context: jetstream::Context,
    subject: String,
    stream: String,
    /// `job:operator:subtask`, the start of the ids of what it keeps.
    ids: String,
    index: u32,
    parallelism: u32,
    /// Records since the last checkpoint, and their bytes.
    open: Vec<ByteBuf>,
    open_bytes: u64,
    /// Kept for checkpoints, not yet published.
    kept: Vec<Kept>,
}

impl Sink {
    /// Connects, and checks that the stream stores the subject and deduplicates long enough.
    pub(in crate::connectors) async fn open(
        setup: &Setup<'_>,
        config: &NatsSink,
    ) -> Result<Sink, Cause> {
        let connected = super::connect(setup, &config.url, &config.auth, &config.stream);
        let (context, stream) = connected.await?;
        let info = stream.cached_info();
        let window_ms = info.config.duplicate_window.as_millis() as u64;
        if window_ms < config.duplicate_window_min_ms {
            return Err(Cause::DuplicateWindow {
                stream: config.stream.clone(),
                window_ms,
                needed_ms: config.duplicate_window_min_ms,
            });
        }
        if !info
            .config
            .subjects
            .iter()
            .any(|s| matches(s, &config.subject))
        {
            return Err(Cause::WrongStream {
                subject: config.subject.clone(),
                stream: config.stream.clone(),
                found: "none of its subjects".to_owned(),
            });
        }
        let subtask = setup.subtask;
        Ok(Sink {
            context,
            subject: config.subject.clone(),
            stream: config.stream.clone(),
            ids: format!("{}:{}:{}", setup.job, subtask.operator, subtask.index),
            index: subtask.index,
            parallelism: setup.parallelism,
            open: Vec::new(),
            open_bytes: 0,
            kept: Vec::new(),
        })
    }

    /// What it kept and has not published, encoded.
    pub(in crate::connectors) fn snapshot(&self, _checkpoint: u64) -> Vec<u8> {
        let state = State {
            kept: self.kept.clone(),
        };
        state::encode(STATE_VERSION, &state)
    }

    /// Takes over what the old subtasks it succeeds kept (old `j` for new `j % parallelism`).
    pub(in crate::connectors) fn restore(&mut self, states: &[&[u8]]) -> Result<(), StateError> {
        for bytes in states {
            let old: State = state::decode(STATE_VERSION, bytes)?;
            let mine = old.kept.into_iter();
            let mine = mine.filter(|k| owns_old(self.index, self.parallelism, k.subtask));
            self.kept.extend(mine);
        }
        self.kept.sort_by_key(|k| (k.checkpoint, k.subtask));
        Ok(())
    }

    /// Keeps a batch's values for the next checkpoint.
    pub(in crate::connectors) fn write(&mut self, batch: &Batch) -> Result<(), Cause> {
        let records = jobhost_batch::Records::of_checked(columns(batch));
        for record in records {
            self.open_bytes += record.value.len() as u64;
            self.open.push(ByteBuf::from(record.value));
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
            ids: format!("{}:{checkpoint}", self.ids),
            subtask: self.index,
            checkpoint,
            records: std::mem::take(&mut self.open),
        });
    }

    /// Publishes what checkpoint `checkpoint` and earlier ones kept.
    pub(in crate::connectors) async fn commit(&mut self, checkpoint: u64) -> Result<(), Cause> {
        while self
            .kept
            .first()
            .is_some_and(|k| k.checkpoint <= checkpoint)
        {
            self.publish(&self.kept[0]).await?;
            self.kept.remove(0);
        }
        Ok(())
    }

    /// Publishes everything the restored checkpoint kept: ids the stream has seen are dropped
    /// as duplicates.
    pub(in crate::connectors) async fn recover(&mut self) -> Result<(), Cause> {
        self.commit(u64::MAX).await
    }

    /// Publishes one checkpoint's records, [`PUBLISH_IN_FLIGHT_MAX`] at a time, and waits for
    /// the stream to acknowledge each.
    async fn publish(&self, kept: &Kept) -> Result<(), Cause> {
        for (chunk, records) in kept.records.chunks(PUBLISH_IN_FLIGHT_MAX).enumerate() {
            let mut acks: Vec<PublishAckFuture> = Vec::with_capacity(records.len());
            for (i, record) in records.iter().enumerate() {
                let index = chunk * PUBLISH_IN_FLIGHT_MAX + i;
                let message = PublishMessage::build()
                    .payload(bytes::Bytes::copy_from_slice(record))
                    .message_id(format!("{}:{index}", kept.ids));
                let sent = self
                    .context
                    .send_publish(self.subject.clone(), message)
                    .await;
                acks.push(sent.map_err(|e| Cause::nats("publishing")(Box::new(e)))?);
            }
            for ack in acks {
                let ack = ack.await;
                let ack = ack.map_err(|e| Cause::nats("awaiting a publish's ack")(Box::new(e)))?;
                if ack.stream != self.stream {
                    return Err(Cause::WrongStream {
                        subject: self.subject.clone(),
                        stream: self.stream.clone(),
                        found: ack.stream,
                    });
                }
            }
        }
        Ok(())
    }
}

/// Whether subject filter `filter` (`*` one token, `>` the rest) matches `subject`.
fn matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for token in filter.split('.') {
        match (token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(s)) if token == s => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// What a person reads of a sink's state: the checkpoints it kept records of.
pub fn describe_state(bytes: &[u8]) -> Result<String, StateError> {
    let state: State = state::decode(STATE_VERSION, bytes)?;
    if state.kept.is_empty() {
        return Ok("nothing kept to publish".to_owned());
    }
    let kept: Vec<String> = state
        .kept
        .iter()
        .map(|k| format!("{} ({} records)", k.ids, k.records.len()))
        .collect();
    Ok(format!("kept to publish: {}", kept.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn subject_filters_match_as_nats_matches_them() {
        assert!(matches("out", "out"));
        assert!(matches("out.*", "out.counts"));
        assert!(matches("out.>", "out.a.b"));
        assert!(matches(">", "anything.at.all"));
        assert!(!matches("out.*", "out.a.b"));
        assert!(!matches("out.*", "out"));
        assert!(!matches("out", "out.counts"));
        assert!(!matches("in.>", "out.a"));
    }
}
