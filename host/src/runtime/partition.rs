//! How a subtask's output is spread over the subtasks downstream: forward, key-by (through
//! key groups), broadcast, rebalance.
//!
//! A record's fork in the road: after a guest produced a batch, [`Output::send`] splits it by
//! edge and by target subtask. Key-by sends each record to the subtask that owns its key's group
//! ([`crate::key_group`]).

use std::sync::Arc;

use super::channel::{Closed, Message, Sender, batch_len};
use crate::barrier::Barrier;
use crate::engine::bindings::Batch;
use crate::key_group::{key_group, subtask_of_key_group};
use crate::metrics::SubtaskCounters;
use crate::topology::Partition;

/// Checks that a batch's columns are consistent, so that reading it cannot go out of bounds.
pub fn check_batch(batch: &Batch) -> Result<(), String> {
    let n = batch.timestamps.len();
    if batch.key_ends.len() != n || batch.value_ends.len() != n {
        return Err(format!(
            "malformed batch: {} timestamps, {} key ends, {} value ends",
            n,
            batch.key_ends.len(),
            batch.value_ends.len()
        ));
    }
    for (column, ends, len) in [
        ("key", &batch.key_ends, batch.keys.len()),
        ("value", &batch.value_ends, batch.values.len()),
    ] {
        let monotone = ends.windows(2).all(|w| w[0] <= w[1]);
        if !monotone || ends.last().is_some_and(|&end| end as usize > len) {
            return Err(format!(
                "malformed batch: {column} ends are not increasing within {len} bytes"
            ));
        }
    }
    Ok(())
}

/// The records of a batch checked by [`check_batch`], as `(key, value, timestamp)`.
pub fn records(batch: &Batch) -> impl Iterator<Item = (&[u8], &[u8], i64)> {
    (0..batch.timestamps.len()).map(move |i| {
        let start = |ends: &[u32]| if i == 0 { 0 } else { ends[i - 1] as usize };
        let key = &batch.keys[start(&batch.key_ends)..batch.key_ends[i] as usize];
        let value = &batch.values[start(&batch.value_ends)..batch.value_ends[i] as usize];
        (key, value, batch.timestamps[i])
    })
}

/// Appends a record to a batch (a batch of key-by records also carries their groups).
pub fn push(batch: &mut Batch, key: &[u8], value: &[u8], timestamp: i64) {
    batch.keys.extend_from_slice(key);
    batch.key_ends.push(batch.keys.len() as u32);
    batch.values.extend_from_slice(value);
    batch.value_ends.push(batch.values.len() as u32);
    batch.timestamps.push(timestamp);
}

/// An empty batch.
pub fn empty_batch() -> Batch {
    Batch {
        keys: vec![],
        key_ends: vec![],
        values: vec![],
        value_ends: vec![],
        timestamps: vec![],
        key_groups: vec![],
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
                let groups = records(&batch).map(|(key, ..)| key_group(key, self.max_parallelism));
                batch.key_groups = groups.collect();
                self.targets[0].send_batch(batch, counters).await
            }
            Partition::KeyBy => {
                let parallelism = self.targets.len() as u32;
                let mut split: Vec<Batch> = (0..parallelism).map(|_| empty_batch()).collect();
                for (key, value, timestamp) in records(&batch) {
                    let group = key_group(key, self.max_parallelism);
                    let target = subtask_of_key_group(group, self.max_parallelism, parallelism);
                    let part = &mut split[target as usize];
                    push(part, key, value, timestamp);
                    part.key_groups.push(group);
                }
                for (target, part) in self.targets.iter().zip(split) {
                    if batch_len(&part) > 0 {
                        target.send_batch(part, counters).await?;
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

    #[test]
    fn records_round_trip_through_push() {
        let mut batch = empty_batch();
        push(&mut batch, b"k1", b"v1", 1);
        push(&mut batch, b"", b"value", -2);
        check_batch(&batch).unwrap();
        let all: Vec<_> = records(&batch).collect();
        assert_eq!(
            all,
            [(&b"k1"[..], &b"v1"[..], 1), (&b""[..], &b"value"[..], -2)]
        );
    }

    #[test]
    fn malformed_batches_are_refused() {
        let mut batch = empty_batch();
        push(&mut batch, b"k", b"v", 0);
        let mut short = batch.clone();
        short.key_ends = vec![5];
        assert!(check_batch(&short).unwrap_err().contains("key ends"));
        let mut uneven = batch.clone();
        uneven.timestamps.push(1);
        assert!(check_batch(&uneven).unwrap_err().contains("2 timestamps"));
    }

    #[tokio::test]
    async fn key_by_sends_each_key_to_one_subtask_only() {
        let (txs, mut rxs): (Vec<_>, Vec<_>) =
            (0..2).map(|_| super::super::channel::channel(1000)).unzip();
        let mut output = Output::new(
            vec![OutputEdge::new(Partition::KeyBy, txs, 128)],
            Arc::default(),
        );
        let mut batch = empty_batch();
        for word in ["a", "b", "c", "a", "d", "b"] {
            push(&mut batch, word.as_bytes(), b"", 0);
        }
        output.send(batch).await.unwrap();
        output.end().unwrap();
        let mut owner = std::collections::HashMap::new();
        for (subtask, rx) in rxs.iter_mut().enumerate() {
            while let Some(Message::Batch(b)) = std::future::poll_fn(|cx| rx.poll_recv(cx)).await {
                assert_eq!(b.key_groups.len(), b.timestamps.len());
                for ((key, _, _), &group) in records(&b).zip(&b.key_groups) {
                    assert_eq!(*owner.entry(key.to_vec()).or_insert(subtask), subtask);
                    assert_eq!(group, key_group(key, 128));
                }
            }
        }
        assert_eq!(owner.len(), 4);
    }
}
