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
use serde_bytes::ByteBuf;

use super::super::config::NatsSink;
use super::super::kept::{self, Keeper};
use super::super::state::StateError;
use super::super::{Cause, Setup};
use crate::engine::bindings::Batch;
use crate::runtime::partition::columns;

/// Its name, as points record it.
pub const NAME: &str = "jobhost:nats-sink";
/// Its state format ([`kept::State`] of payloads).
pub const STATE_VERSION: u8 = 1;
/// Messages published before their acknowledgements are awaited.
pub const PUBLISH_IN_FLIGHT_MAX: usize = 1_024;

/// The records a checkpoint kept, not yet published: their values, the messages' payloads.
type Kept = kept::Kept<ByteBuf>;

/// One subtask of the sink.
pub struct Sink {
    context: jetstream::Context,
    subject: String,
    stream: String,
    /// Records since the last checkpoint, and kept for checkpoints, not yet published.
    keeper: Keeper<ByteBuf>,
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
        Ok(Sink {
            context,
            subject: config.subject.clone(),
            stream: config.stream.clone(),
            keeper: Keeper::new(setup),
        })
    }

    /// What it kept and has not published, encoded.
    pub(in crate::connectors) fn snapshot(&self, _checkpoint: u64) -> Vec<u8> {
        self.keeper.snapshot(STATE_VERSION)
    }

    /// Takes over what the old subtasks it succeeds kept (old `j` for new `j % parallelism`).
    pub(in crate::connectors) fn restore(&mut self, states: &[&[u8]]) -> Result<(), StateError> {
        self.keeper.restore(STATE_VERSION, states)
    }

    /// Keeps a batch's values for the next checkpoint.
    pub(in crate::connectors) fn write(&mut self, batch: &Batch) -> Result<(), Cause> {
        for record in jobhost_batch::Records::of_checked(columns(batch)) {
            let bytes = record.value.len();
            self.keeper.push(ByteBuf::from(record.value), bytes);
        }
        self.keeper.check_bound()
    }

    /// Keeps what was written since the last checkpoint as checkpoint `checkpoint`'s.
    pub(in crate::connectors) fn prepare_commit(&mut self, checkpoint: u64) {
        self.keeper.prepare_commit(checkpoint);
    }

    /// Publishes what checkpoint `checkpoint` and earlier ones kept.
    pub(in crate::connectors) async fn commit(&mut self, checkpoint: u64) -> Result<(), Cause> {
        while let Some(kept) = self.keeper.next_due(checkpoint) {
            self.publish(kept).await?;
            self.keeper.committed_next();
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
    kept::describe::<ByteBuf>(STATE_VERSION, bytes, "publish")
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
