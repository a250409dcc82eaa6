//! The edges between subtasks: in-band messages on channels bounded by records.
//!
//! A record's hop from one subtask to the next. Each input of a subtask is its own channel, so
//! that barrier alignment can hold back one input while others flow. Capacity is counted in
//! records, not messages (credit-based flow control, as in Flink): a sender waits for credit
//! before sending a batch, so a slow subtask slows its upstream down (back-pressure).

use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::{Semaphore, mpsc};

use crate::barrier::Barrier;
use crate::engine::bindings::Batch;
use crate::metrics::SubtaskCounters;

/// What travels on an edge.
#[derive(Debug)]
pub enum Message {
    /// Records.
    Batch(Batch),
    /// A checkpoint barrier: everything before it belongs to the checkpoint.
    Barrier(Barrier),
    /// No record with an earlier timestamp follows on this edge ([`crate::time`]).
    Watermark(i64),
    /// Nothing follows on this edge for now: its watermark holds no one back until it sends a
    /// record or a watermark again.
    Idle,
    /// The sender will send nothing more.
    End,
}

/// The receiving side is gone (its subtask ended or the job is shutting down).
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("downstream subtask is gone")]
pub struct Closed;

/// Number of records in a batch.
pub fn batch_len(batch: &Batch) -> usize {
    batch.timestamps.len()
}

/// Sending half of one edge channel.
#[derive(Debug)]
pub struct Sender {
    tx: mpsc::UnboundedSender<Message>,
    credits: Arc<Semaphore>,
    records_max: u32,
}

/// Receiving half of one edge channel.
#[derive(Debug)]
pub struct Receiver {
    rx: mpsc::UnboundedReceiver<Message>,
    credits: Arc<Semaphore>,
    records_max: u32,
}

/// A channel that holds at most `records_max` records in flight (a larger batch still passes,
/// alone).
pub fn channel(records_max: u32) -> (Sender, Receiver) {
    assert!(records_max > 0);
    let (tx, rx) = mpsc::unbounded_channel();
    let credits = Arc::new(Semaphore::new(records_max as usize));
    (
        Sender {
            tx,
            credits: credits.clone(),
            records_max,
        },
        Receiver {
            rx,
            credits,
            records_max,
        },
    )
}

fn credit_for(batch: &Batch, records_max: u32) -> u32 {
    (batch_len(batch) as u32).clamp(1, records_max)
}

impl Sender {
    /// Sends a batch once the receiver has room for it; time spent waiting for that room
    /// counts as back-pressure in `counters` (a clock is read only when the sender waits).
    pub async fn send_batch(&self, batch: Batch, counters: &SubtaskCounters) -> Result<(), Closed> {
        let credit = credit_for(&batch, self.records_max);
        let permit = match self.credits.try_acquire_many(credit) {
            Ok(permit) => permit,
            Err(tokio::sync::TryAcquireError::Closed) => return Err(Closed),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let since = std::time::Instant::now();
                let acquired = self.credits.acquire_many(credit).await;
                counters.blocked_since(since);
                acquired.map_err(|_| Closed)?
            }
        };
        // The receiver returns the credit when it takes the batch.
        permit.forget();
        self.tx.send(Message::Batch(batch)).map_err(|_| Closed)
    }

    /// Sends a barrier, a watermark, idleness or an end marker; these never wait for credit
    /// (a subtask sends a watermark only when it advances, so they cannot pile up faster
    /// than the batches they follow).
    pub fn send_control(&self, message: Message) -> Result<(), Closed> {
        assert!(
            !matches!(message, Message::Batch(_)),
            "batches go through send_batch"
        );
        self.tx.send(message).map_err(|_| Closed)
    }
}

impl Receiver {
    /// Polls for the next message, returning the credit of a batch as it is taken.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let polled = self.rx.poll_recv(cx);
        if let Poll::Ready(Some(Message::Batch(batch))) = &polled {
            self.credits
                .add_permits(credit_for(batch, self.records_max) as usize);
        }
        polled
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        // Wake senders waiting for credit: they will see the channel closed.
        self.credits.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;

    fn counters() -> Arc<SubtaskCounters> {
        Arc::default()
    }

    fn batch(records: usize) -> Batch {
        Batch {
            keys: vec![],
            key_ends: vec![0; records],
            values: vec![],
            value_ends: vec![0; records],
            timestamps: vec![0; records],
            key_groups: vec![],
        }
    }

    #[tokio::test]
    async fn a_full_channel_holds_the_sender_back_until_records_are_taken() {
        let (tx, mut rx) = channel(10);
        let counters = counters();
        tx.send_batch(batch(6), &counters).await.unwrap();
        // Polled once, no clock involved: the second send waits for credit.
        let mut second = std::pin::pin!(tx.send_batch(batch(6), &counters));
        let polled = poll_fn(|cx| std::task::Poll::Ready(second.as_mut().poll(cx))).await;
        assert!(
            polled.is_pending(),
            "a second batch of 6 exceeds 10 records in flight"
        );
        let first = poll_fn(|cx| rx.poll_recv(cx)).await;
        assert!(matches!(first, Some(Message::Batch(b)) if batch_len(&b) == 6));
        // The credit of the records taken lets the waiting send through (the timeout only
        // turns a hang into a failure).
        let sent = tokio::time::timeout(std::time::Duration::from_secs(10), second).await;
        sent.expect("the credit of the records taken reached the sender")
            .unwrap();
    }

    #[tokio::test]
    async fn barriers_pass_a_full_channel_in_order() {
        let (tx, mut rx) = channel(1);
        let counters = counters();
        tx.send_batch(batch(1), &counters).await.unwrap();
        tx.send_control(Message::End).unwrap();
        assert!(matches!(
            poll_fn(|cx| rx.poll_recv(cx)).await,
            Some(Message::Batch(_))
        ));
        assert!(matches!(
            poll_fn(|cx| rx.poll_recv(cx)).await,
            Some(Message::End)
        ));
    }

    #[tokio::test]
    async fn a_sender_waiting_for_credit_learns_the_receiver_is_gone() {
        let (tx, rx) = channel(1);
        let counters = counters();
        tx.send_batch(batch(1), &counters).await.unwrap();
        let waiting = tokio::spawn(async move { tx.send_batch(batch(1), &counters).await });
        drop(rx);
        assert!(waiting.await.unwrap().is_err());
    }
}
