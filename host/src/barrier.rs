//! Barriers, their alignment inside a subtask, and the checkpoint coordinator's decisions.
//!
//! One barrier's journey: the [`Coordinator`] numbers it and the runtime injects it into every
//! source; it travels in-band behind the records before it; a subtask with several inputs
//! [`Aligner`]s it (an input that delivered barrier N is held back until N has arrived on all),
//! then snapshots and forwards it; each subtask's ack comes back to the `Coordinator`, which
//! says when the checkpoint is complete, after which the runtime writes its metadata and tells
//! the sinks to commit. Performs no I/O: the runtime carries the decisions out.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::ids::{CheckpointId, SubtaskId};

/// What a checkpoint becomes once complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BarrierKind {
    /// A periodic checkpoint, subject to retention.
    Checkpoint,
    /// A savepoint: pinned, never removed by retention.
    Savepoint,
}

/// A checkpoint barrier, flowing in-band from the sources to the sinks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Barrier {
    /// Which checkpoint this barrier delimits.
    pub checkpoint: CheckpointId,
    /// Checkpoint or savepoint.
    pub kind: BarrierKind,
    /// Whether the job stops once this barrier has passed: the sources emit nothing after it.
    pub then_stop: bool,
}

/// What an [`Aligner`] says after a barrier or an end of input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Alignment {
    /// The barrier has not yet arrived on every live input.
    Pending,
    /// The barrier has arrived on every live input: snapshot, forward it, unblock all inputs.
    Aligned(Barrier),
}

/// Tracks barrier arrivals over the inputs of one subtask. Performs no I/O.
#[derive(Debug)]
pub struct Aligner {
    /// The barrier being aligned, if any.
    current: Option<Barrier>,
    /// Inputs that delivered `current` and are held back until it is aligned.
    blocked: Vec<bool>,
    /// Inputs that have ended: they deliver no more barriers and block nothing.
    ended: Vec<bool>,
}

impl Aligner {
    /// An aligner over `inputs` input channels.
    pub fn new(inputs: usize) -> Self {
        Self {
            current: None,
            blocked: vec![false; inputs],
            ended: vec![false; inputs],
        }
    }

    /// Barrier `barrier` arrived on `input`.
    pub fn on_barrier(&mut self, input: usize, barrier: Barrier) -> Alignment {
        assert!(
            !self.blocked[input],
            "input {input} delivered a barrier while blocked"
        );
        assert!(
            !self.ended[input],
            "input {input} delivered a barrier after its end"
        );
        match self.current {
            None => self.current = Some(barrier),
            Some(current) => assert_eq!(
                current.checkpoint, barrier.checkpoint,
                "barriers are in order on every input"
            ),
        }
        self.blocked[input] = true;
        self.check()
    }

    /// `input` ended; it no longer takes part in alignment.
    pub fn on_end(&mut self, input: usize) -> Alignment {
        self.ended[input] = true;
        self.blocked[input] = false;
        match self.current {
            Some(_) => self.check(),
            None => Alignment::Pending,
        }
    }

    /// Whether records from `input` must wait: it already delivered the current barrier.
    pub fn is_blocked(&self, input: usize) -> bool {
        self.blocked[input]
    }

    /// Whether `input` has ended.
    pub fn is_ended(&self, input: usize) -> bool {
        self.ended[input]
    }

    /// Whether every input has ended.
    pub fn all_ended(&self) -> bool {
        self.ended.iter().all(|&e| e)
    }

    fn check(&mut self) -> Alignment {
        let aligned = (0..self.blocked.len()).all(|i| self.blocked[i] || self.ended[i]);
        if !aligned {
            return Alignment::Pending;
        }
        self.blocked.iter_mut().for_each(|b| *b = false);
        Alignment::Aligned(self.current.take().expect("aligning a barrier"))
    }
}

/// What the [`Coordinator`] says after an ack.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Still waiting for acks.
    Pending,
    /// Every subtask acked: write the metadata, then tell the sinks to commit.
    Complete(Barrier),
    /// The ack was for a checkpoint no longer in flight (aborted or unknown): ignore it.
    Stale,
}

/// Numbers checkpoints and tracks the acks of the one in flight. Performs no I/O.
#[derive(Debug)]
pub struct Coordinator {
    next: CheckpointId,
    subtasks: BTreeSet<SubtaskId>,
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
struct InFlight {
    barrier: Barrier,
    acked: BTreeSet<SubtaskId>,
}

impl Coordinator {
    /// A coordinator for a job with these subtasks, whose first checkpoint will be `first`.
    pub fn new(subtasks: impl IntoIterator<Item = SubtaskId>, first: CheckpointId) -> Self {
        Self {
            next: first,
            subtasks: subtasks.into_iter().collect(),
            in_flight: None,
        }
    }

    /// Whether a checkpoint is in flight (at most one is).
    pub fn is_busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The number the next triggered checkpoint will get.
    pub fn next(&self) -> CheckpointId {
        self.next
    }

    /// The barrier of the checkpoint in flight, if any.
    pub fn in_flight(&self) -> Option<Barrier> {
        self.in_flight.as_ref().map(|f| f.barrier)
    }

    /// Starts the next checkpoint; `None` while one is in flight.
    pub fn trigger(&mut self, kind: BarrierKind, then_stop: bool) -> Option<Barrier> {
        if self.in_flight.is_some() {
            return None;
        }
        let barrier = Barrier {
            checkpoint: self.next,
            kind,
            then_stop,
        };
        self.next = self.next.next();
        self.in_flight = Some(InFlight {
            barrier,
            acked: BTreeSet::new(),
        });
        Some(barrier)
    }

    /// `subtask` has snapshotted for `checkpoint` and its state is durable.
    pub fn ack(&mut self, checkpoint: CheckpointId, subtask: &SubtaskId) -> Progress {
        let Some(in_flight) = self
            .in_flight
            .as_mut()
            .filter(|f| f.barrier.checkpoint == checkpoint)
        else {
            return Progress::Stale;
        };
        assert!(
            self.subtasks.contains(subtask),
            "ack from unknown subtask {subtask}"
        );
        in_flight.acked.insert(subtask.clone());
        if in_flight.acked.len() < self.subtasks.len() {
            return Progress::Pending;
        }
        let barrier = in_flight.barrier;
        self.in_flight = None;
        Progress::Complete(barrier)
    }

    /// Gives up on the checkpoint in flight, if it is `checkpoint`; returns it if so.
    pub fn abort(&mut self, checkpoint: CheckpointId) -> Option<Barrier> {
        let in_flight = self
            .in_flight
            .take_if(|f| f.barrier.checkpoint == checkpoint)?;
        Some(in_flight.barrier)
    }
}

/// Which retained checkpoints to delete so that the newest `keep` remain. Performs no I/O.
pub fn retention_victims(completed: &[CheckpointId], keep: u32) -> Vec<CheckpointId> {
    let mut sorted = completed.to_vec();
    sorted.sort();
    let excess = sorted.len().saturating_sub(keep as usize);
    sorted.truncate(excess);
    sorted
}

#[cfg(test)]
mod tests;
