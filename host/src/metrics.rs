//! What a running job counts about itself: per subtask, records and batches in and out, time
//! blocked on credit (back-pressure), time in guest calls (busy), guest traps, its watermark
//! (and its lag behind the wall clock, computed when sampled), its pending timers; per job,
//! restarts and the history of completed checkpoints.
//!
//! The hot path only adds to relaxed atomics of its own subtask, once per batch (never per
//! record, never under a lock); the coordinator, off the hot path, records checkpoints under a
//! mutex. [`JobMetrics::sample`] copies everything into a plain [`Sample`], which the control
//! socket hands to `host serve`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::ids::{JobId, OperatorId, SubtaskId};
use crate::time::{WATERMARK_END, WATERMARK_MIN};
use crate::topology::{Partition, Plan, Role};

/// Completed checkpoints a job remembers for its history.
pub const CHECKPOINT_HISTORY_MAX: usize = 64;

/// One subtask's counters: each written by that subtask alone.
#[derive(Debug, Default)]
pub struct SubtaskCounters {
    records_in: AtomicU64,
    batches_in: AtomicU64,
    records_out: AtomicU64,
    batches_out: AtomicU64,
    blocked_ns: AtomicU64,
    busy_ns: AtomicU64,
    checkpoint_sync_ns: AtomicU64,
    traps: AtomicU64,
    watermark: Watermark,
    timers_pending: AtomicU64,
    records_late: AtomicU64,
}

/// A subtask's watermark, [`WATERMARK_MIN`] before its first.
#[derive(Debug)]
struct Watermark(AtomicI64);

impl Default for Watermark {
    fn default() -> Self {
        Watermark(AtomicI64::new(WATERMARK_MIN))
    }
}

impl SubtaskCounters {
    /// A batch of `records` came in.
    pub fn received(&self, records: usize) {
        self.records_in.fetch_add(records as u64, Relaxed);
        self.batches_in.fetch_add(1, Relaxed);
    }

    /// A batch of `records` went out (a source's poll, an operator's `process`).
    pub fn sent(&self, records: usize) {
        self.records_out.fetch_add(records as u64, Relaxed);
        self.batches_out.fetch_add(1, Relaxed);
    }

    /// The subtask waited since `since` for credit downstream.
    pub fn blocked_since(&self, since: Instant) {
        self.blocked_ns
            .fetch_add(since.elapsed().as_nanos() as u64, Relaxed);
    }

    /// The subtask's guest worked since `since`.
    pub fn busy_since(&self, since: Instant) {
        self.busy_ns
            .fetch_add(since.elapsed().as_nanos() as u64, Relaxed);
    }

    /// The subtask spent since `since` on a checkpoint on its own path (its guest's `snapshot`,
    /// and the merge of it into the host's copy): the part of a checkpoint that stops it.
    pub fn checkpoint_synced_since(&self, since: Instant) {
        self.checkpoint_sync_ns
            .fetch_add(since.elapsed().as_nanos() as u64, Relaxed);
    }

    /// `records` came in behind the subtask's watermark.
    pub fn late(&self, records: usize) {
        self.records_late.fetch_add(records as u64, Relaxed);
    }

    /// The subtask's guest trapped.
    pub fn trapped(&self) {
        self.traps.fetch_add(1, Relaxed);
    }

    /// The subtask now keeps `pending` timers.
    pub fn timers_pending(&self, pending: u64) {
        self.timers_pending.store(pending, Relaxed);
    }

    /// The subtask's watermark is now `watermark`.
    pub fn watermark(&self, watermark: i64) {
        self.watermark.0.store(watermark, Relaxed);
    }

    fn sample(&self, id: &SubtaskId, now_unix_ms: i64) -> SubtaskSample {
        let watermark = self.watermark.0.load(Relaxed);
        let watermark = (watermark != WATERMARK_MIN).then_some(watermark);
        SubtaskSample {
            timers_pending: self.timers_pending.load(Relaxed),
            records_late: self.records_late.load(Relaxed),
            watermark,
            watermark_lag_ms: watermark
                .filter(|&w| w != WATERMARK_END)
                .map(|w| now_unix_ms.saturating_sub(w)),
            operator: id.operator.clone(),
            index: id.index,
            records_in: self.records_in.load(Relaxed),
            batches_in: self.batches_in.load(Relaxed),
            records_out: self.records_out.load(Relaxed),
            batches_out: self.batches_out.load(Relaxed),
            blocked_ns: self.blocked_ns.load(Relaxed),
            busy_ns: self.busy_ns.load(Relaxed),
            checkpoint_sync_ns: self.checkpoint_sync_ns.load(Relaxed),
            traps: self.traps.load(Relaxed),
        }
    }
}

/// A completed checkpoint or savepoint, as the history shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointStat {
    /// Its number within the job.
    pub checkpoint: u64,
    /// `checkpoint` or `savepoint`.
    pub kind: String,
    /// When it completed.
    pub completed_unix_ms: u64,
    /// From trigger to published.
    pub duration_ms: u64,
    /// Bytes of its folder, as `host savepoints` counts them (segments it shares by hard links
    /// with earlier points included).
    pub bytes: u64,
    /// The longest any subtask held inputs back to align its barrier.
    pub alignment_ms: u64,
    /// Bytes of the state files (segment tables) per operator.
    pub operator_bytes: BTreeMap<OperatorId, u64>,
}

/// Everything a job counts, shared by its subtasks, its coordinator and its control socket.
#[derive(Debug)]
pub struct JobMetrics {
    job: JobId,
    topology: Topology,
    started: Instant,
    subtasks: Vec<(SubtaskId, Arc<SubtaskCounters>)>,
    restarts: AtomicU64,
    checkpoints: Mutex<VecDeque<CheckpointStat>>,
}

impl JobMetrics {
    /// Counters for every subtask of `topology`, all zero.
    pub fn new(job: JobId, topology: Topology) -> Self {
        let subtasks = topology.operators.iter().flat_map(|op| {
            (0..op.parallelism).map(|index| {
                let id = SubtaskId {
                    operator: op.id.clone(),
                    index,
                };
                (id, Arc::default())
            })
        });
        JobMetrics {
            job,
            subtasks: subtasks.collect(),
            topology,
            started: Instant::now(),
            restarts: AtomicU64::new(0),
            checkpoints: Mutex::new(VecDeque::new()),
        }
    }

    /// The counters of `subtask` (the same across restarts).
    pub fn subtask(&self, subtask: &SubtaskId) -> Arc<SubtaskCounters> {
        let found = self.subtasks.iter().find(|(id, _)| id == subtask);
        found.map(|(_, c)| c.clone()).unwrap_or_default()
    }

    /// The job.
    pub fn job(&self) -> &JobId {
        &self.job
    }

    /// The job restarted after a failure.
    pub fn restarted(&self) {
        self.restarts.fetch_add(1, Relaxed);
    }

    /// A checkpoint completed (the coordinator's, off the hot path).
    pub fn completed(&self, stat: CheckpointStat) {
        let mut history = self.checkpoints.lock().expect("no panics under this lock");
        if history.len() == CHECKPOINT_HISTORY_MAX {
            history.pop_front();
        }
        history.push_back(stat);
    }

    /// A copy of every counter now.
    pub fn sample(&self) -> Sample {
        let history = self.checkpoints.lock().expect("no panics under this lock");
        let now_unix_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        Sample {
            job: self.job.clone(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            topology: self.topology.clone(),
            subtasks: self
                .subtasks
                .iter()
                .map(|(id, c)| c.sample(id, now_unix_ms))
                .collect(),
            restarts: self.restarts.load(Relaxed),
            checkpoints: history.iter().cloned().collect(),
        }
    }
}

/// The job's graph, for drawing it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topology {
    /// Operators in job-file order.
    pub operators: Vec<OperatorNode>,
    /// Edges between them.
    pub edges: Vec<EdgeLine>,
}

/// One operator of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorNode {
    /// Its id.
    pub id: OperatorId,
    /// `source`, `operator` or `sink`.
    pub role: String,
    /// Its subtasks.
    pub parallelism: u32,
}

/// One edge of the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EdgeLine {
    /// Upstream operator.
    pub from: OperatorId,
    /// Downstream operator.
    pub to: OperatorId,
    /// `forward`, `key-by`, `broadcast` or `rebalance`.
    pub partition: String,
}

impl Topology {
    /// The graph of `plan`.
    pub fn of(plan: &Plan) -> Self {
        let role = |role: Role| match role {
            Role::Source => "source",
            Role::Operator => "operator",
            Role::Sink => "sink",
        };
        let partition = |p: Partition| match p {
            Partition::Forward => "forward",
            Partition::KeyBy => "key-by",
            Partition::Broadcast => "broadcast",
            Partition::Rebalance => "rebalance",
        };
        Topology {
            operators: plan
                .operators
                .iter()
                .map(|op| OperatorNode {
                    id: op.id.clone(),
                    role: role(op.role).to_owned(),
                    parallelism: op.parallelism,
                })
                .collect(),
            edges: plan
                .edges
                .iter()
                .map(|e| EdgeLine {
                    from: plan.operators[e.from].id.clone(),
                    to: plan.operators[e.to].id.clone(),
                    partition: partition(e.partition).to_owned(),
                })
                .collect(),
        }
    }
}

/// One subtask's counters at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubtaskSample {
    /// Its operator.
    pub operator: OperatorId,
    /// Its index.
    pub index: u32,
    /// Records received.
    pub records_in: u64,
    /// Batches received.
    pub batches_in: u64,
    /// Records sent (polled, for a source; returned by `process`, for an operator).
    pub records_out: u64,
    /// Batches sent.
    pub batches_out: u64,
    /// Nanoseconds waiting for credit downstream (back-pressure).
    pub blocked_ns: u64,
    /// Nanoseconds in guest calls on records (`poll-batch`, `process`, `write-batch`).
    pub busy_ns: u64,
    /// Nanoseconds on checkpoints on the subtask's own path, while it processed nothing: its
    /// guest's `snapshot` (a sink's `prepare-commit` too) and the merge into the host's copy
    /// of its state (Flink's synchronous part; the write runs off that path).
    #[serde(default)]
    pub checkpoint_sync_ns: u64,
    /// Guest traps.
    pub traps: u64,
    /// Its event-time watermark (milliseconds, as the records' timestamps); none before its
    /// first. `i64::MAX` once its input ran dry.
    #[serde(default)]
    pub watermark: Option<i64>,
    /// How far its watermark is behind the wall clock, in milliseconds (meaningful where
    /// records carry wall-clock timestamps); none without a watermark, or at the end.
    #[serde(default)]
    pub watermark_lag_ms: Option<i64>,
    /// Timers it keeps pending, of both clocks.
    #[serde(default)]
    pub timers_pending: u64,
    /// Records that came in behind its watermark (a timestamp at or below it: late, as Flink
    /// counts them; a window operator drops those past its allowed lateness).
    #[serde(default)]
    pub records_late: u64,
}

/// Everything a running job counts, at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// The job.
    pub job: JobId,
    /// Since the job started, for rates.
    pub uptime_ms: u64,
    /// Its graph.
    pub topology: Topology,
    /// Every subtask's counters.
    pub subtasks: Vec<SubtaskSample>,
    /// Restarts after failures.
    pub restarts: u64,
    /// The latest completed checkpoints and savepoints, oldest first.
    pub checkpoints: Vec<CheckpointStat>,
}
