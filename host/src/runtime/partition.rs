//! How a subtask's output is spread over the subtasks downstream: forward, key-by (through
//! key groups), broadcast, rebalance.
//!
//! A record's fork in the road: after a guest produced a batch, [`Output::send`] splits it by
//! edge and by target subtask. Key-by sends each record to the subtask that owns its key's group
//! ([`crate::key_group`]). Barriers, watermarks and ends go to every downstream subtask.

use std::sync::Arc;

use super::channel::{Closed, Message, Sender, batch_len};
use jobhost_batch::{BatchBuilder, BatchParts, Columns, MalformedBatch, Records};

use crate::barrier::Barrier;
use crate::engine::bindings::Batch;
use crate::key_group::{key_group, subtask_of_key_group};
use crate::metrics::SubtaskCounters;
use crate::time::watermarks::Signal;
use crate::topology::Partition;

/// A batch's columns, for the codec shared with the guests ([`jobhost_batch`]).
pub fn columns(batch: &Batch) -> Columns<'_> {
    Columns {
        keys: &batch.keys,
        key_ends: &batch.key_ends,
        values: &batch.values,
        value_ends: &batch.value_ends,
        timestamps: &batch.timestamps,
        key_groups: &batch.key_groups,
    }
}

/// Checks that a batch's columns are consistent, so that reading it cannot go out of bounds:
/// the same checks as a Rust guest's SDK makes of the batches it receives.
pub fn check_batch(batch: &Batch) -> Result<(), MalformedBatch> {
    Records::new(columns(batch)).map(|_| ())
}

/// A batch of the records built in `parts`, with `key_groups` (one per record, or none).
pub fn into_batch(parts: BatchParts, key_groups: Vec<u32>) -> Batch {
    Batch {
        keys: parts.keys,
        key_ends: parts.key_ends,
        values: parts.values,
        value_ends: parts.value_ends,
        timestamps: parts.timestamps,
        key_groups,
    }
}

/// One outgoing edge of a subtask: a sender per reachable downstream subtask.
#[derive(Debug)]
pub struct OutputEdge {
    partition: Partition,
    targets: Vec<Sender>,
    max_parallelism: u32,
    next: usize,
}

impl OutputEdge {
    /// An edge to `targets`, indexed by downstream subtask (a single one for `forward`).
    pub fn new(partition: Partition, targets: Vec<Sender>, max_parallelism: u32) -> Self {
        assert!(!targets.is_empty());
        OutputEdge {
            partition,
            targets,
            max_parallelism,
            next: 0,
        }
    }

    async fn send(&mut self, mut batch: Batch, counters: &SubtaskCounters) -> Result<(), Closed> {
        // Whatever groups a guest put in its batch mean nothing: key-by sets them.
        batch.key_groups.clear();
        match self.partition {
            Partition::Forward => self.targets[0].send_batch(batch, counters).await,
            Partition::Rebalance => {
                self.next = (self.next + 1) % self.targets.len();
                self.targets[self.next].send_batch(batch, counters).await
            }
            Partition::Broadcast => {
                for target in &self.targets {
                    target.send_batch(batch.clone(), counters).await?;
                }
                Ok(())
            }
            // One downstream subtask owns every key group: no need to split the batch.
            Partition::KeyBy if self.targets.len() == 1 => {
                let records = Records::of_checked(columns(&batch));
                let groups = records.map(|r| key_group(r.key, self.max_parallelism));
                batch.key_groups = groups.collect();
                self.targets[0].send_batch(batch, counters).await
            }
            Partition::KeyBy => {
                let parallelism = self.targets.len() as u32;
                let mut split: Vec<(BatchBuilder, Vec<u32>)> =
                    (0..parallelism).map(|_| Default::default()).collect();
                for record in Records::of_checked(columns(&batch)) {
                    let group = key_group(record.key, self.max_parallelism);
                    let target = subtask_of_key_group(group, self.max_parallelism, parallelism);
                    let (part, groups) = &mut split[target as usize];
                    // A part of a batch within 4 GiB stays within 4 GiB.
                    let pushed = part.push(record.key, record.value, record.timestamp);
                    pushed.expect("a part of a batch fits its offsets");
                    groups.push(group);
                }
                for (target, (part, groups)) in self.targets.iter().zip(split) {
                    if !part.is_empty() {
                        target
                            .send_batch(into_batch(part.finish(), groups), counters)
                            .await?;
                    }
                }
                Ok(())
            }
        }
    }

    fn send_control(&self, message: impl Fn() -> Message) -> Result<(), Closed> {
        self.targets
            .iter()
            .try_for_each(|target| target.send_control(message()))
    }
}

/// All outgoing edges of one subtask.
#[derive(Debug, Default)]
pub struct Output {
    edges: Vec<OutputEdge>,
    /// Its subtask's counters: batches sent, time blocked on credit.
    counters: Arc<SubtaskCounters>,
}

impl Output {
    /// Output over these edges (none for a sink).
    pub fn new(edges: Vec<OutputEdge>, counters: Arc<SubtaskCounters>) -> Self {
        Output { edges, counters }
    }

    /// Sends a batch down every edge, partitioned; waits while downstream is full.
    pub async fn send(&mut self, batch: Batch) -> Result<(), Closed> {
        if batch_len(&batch) == 0 {
            return Ok(());
        }
        let Some((last, rest)) = self.edges.split_last_mut() else {
            return Ok(());
        };
        self.counters.sent(batch_len(&batch));
        for edge in rest {
            edge.send(batch.clone(), &self.counters).await?;
        }
        last.send(batch, &self.counters).await
    }

    /// Forwards a barrier to every downstream subtask.
    pub fn barrier(&self, barrier: Barrier) -> Result<(), Closed> {
        self.edges
            .iter()
            .try_for_each(|edge| edge.send_control(|| Message::Barrier(barrier)))
    }

    /// Sends a watermark, or idleness, to every downstream subtask, behind the records sent
    /// before it.
    pub fn time(&self, signal: Signal) -> Result<(), Closed> {
        let message = || match signal {
            Signal::Watermark(watermark) => Message::Watermark(watermark),
            Signal::Idle => Message::Idle,
        };
        self.edges
            .iter()
            .try_for_each(|edge| edge.send_control(message))
    }

    /// Tells every downstream subtask that this one is done.
    pub fn end(&self) -> Result<(), Closed> {
        self.edges
            .iter()
            .try_for_each(|edge| edge.send_control(|| Message::End))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of `(key, value, timestamp)` records, without key groups.
    fn batch_of(records: &[(&[u8], &[u8], i64)]) -> Batch {
        let mut builder = BatchBuilder::new();
        for &(key, value, timestamp) in records {
            builder.push(key, value, timestamp).unwrap();
        }
        into_batch(builder.finish(), Vec::new())
    }

    #[test]
    fn malformed_batches_are_refused_by_the_shared_checks() {
        let batch = batch_of(&[(b"k", b"v", 0)]);
        check_batch(&batch).unwrap();
        let mut short = batch.clone();
        short.key_ends = vec![5];
        let (column, end, bytes) = ("key", 5, 1);
        let past = MalformedBatch::PastColumn { column, end, bytes };
        assert_eq!(check_batch(&short), Err(past));
        let mut uneven = batch.clone();
        uneven.timestamps.push(1);
        let (ends, records) = (1, 2);
        let count = MalformedBatch::EndCount {
            column,
            ends,
            records,
        };
        assert_eq!(check_batch(&uneven), Err(count));
        let mut grouped = batch.clone();
        grouped.key_groups = vec![1, 2];
        let (groups, records) = (2, 1);
        let groups = MalformedBatch::KeyGroups { groups, records };
        assert_eq!(check_batch(&grouped), Err(groups));
    }

    #[tokio::test]
    async fn key_by_sends_each_key_to_one_subtask_only() {
        let (txs, mut rxs): (Vec<_>, Vec<_>) =
            (0..2).map(|_| super::super::channel::channel(1000)).unzip();
        let mut output = Output::new(
            vec![OutputEdge::new(Partition::KeyBy, txs, 128)],
            Arc::default(),
        );
        let words = ["a", "b", "c", "a", "d", "b"].map(|w| (w.as_bytes(), &b""[..], 0));
        output.send(batch_of(&words)).await.unwrap();
        output.end().unwrap();
        let mut owner = std::collections::HashMap::new();
        for (subtask, rx) in rxs.iter_mut().enumerate() {
            while let Some(Message::Batch(b)) = std::future::poll_fn(|cx| rx.poll_recv(cx)).await {
                for record in Records::new(columns(&b)).unwrap() {
                    let key = record.key;
                    assert_eq!(*owner.entry(key.to_vec()).or_insert(subtask), subtask);
                    assert_eq!(record.key_group, Some(key_group(key, 128)));
                }
            }
        }
        assert_eq!(owner.len(), 4);
    }
}
