//! The runtime's side of a job whose subtasks run in other processes (`host/src/cluster/`):
//! what the coordinator needs of them, with no socket in sight.
//!
//! In one process, building a job starts its subtasks here and the coordinator spawns them.
//! With a [`Remote`], building deploys them elsewhere instead: the coordinator gets, as
//! ever, a command sender per subtask and the subtasks' events on its own channel, plus a
//! [`Session`] to start them, to tell them where a point was published, and to stop them.
//! The coordinator's loop is the same either way.

use std::path::{Path, PathBuf};

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::coordinator::Commands;
use super::subtask::Event;
use super::{BuildError, JobRecord, OperatorInfo};
use crate::engine::Limits;
use crate::ids::{JobId, OperatorId};
use crate::topology::Plan;

/// One channel of an edge, from upstream subtask `from` to downstream subtask `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ChannelId {
    /// The edge's index in the plan.
    pub edge: u32,
    /// The upstream subtask's index.
    pub from: u32,
    /// The downstream subtask's index.
    pub to: u32,
}

/// A point to restore from, as a process elsewhere finds it in the shared store.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PointRef {
    /// Its location (a folder under the state folder, or on the object store behind it).
    pub location: PathBuf,
    /// `--rename OLD=NEW` of the run.
    pub renames: Vec<(OperatorId, OperatorId)>,
    /// `--allow-non-restored-state` of the run.
    pub allow_non_restored: bool,
}

/// What deploying a job elsewhere is given.
pub struct Deploy<'a> {
    /// The job.
    pub job: &'a JobId,
    /// Its plan.
    pub plan: &'a Plan,
    /// Its job file and where it resolves.
    pub record: &'a JobRecord,
    /// The point to restore from, if any.
    pub point: Option<&'a PointRef>,
    /// The guests' limits.
    pub limits: Limits,
    /// Where the subtasks' events go (the coordinator's channel).
    pub events: mpsc::UnboundedSender<Event>,
}

/// A job deployed elsewhere, built, not started.
pub struct Deployed {
    /// What the checkpoint metadata records of each operator, in plan order.
    pub operators: Vec<OperatorInfo>,
    /// A command sender per subtask.
    pub commands: Commands,
    /// Drives the deployment.
    pub session: Box<dyn Session>,
}

/// One deployment of a job elsewhere.
pub trait Session: Send {
    /// Starts every subtask (every share is built).
    fn start(&mut self);
    /// Point `location` of the job was published: later checkpoints may link from it.
    fn published(&self, location: &Path);
    /// Stops every subtask and link of the deployment, and waits until they have stopped
    /// (or their process is gone).
    fn stop(&mut self) -> BoxFuture<'_, ()>;
}

/// Deploys jobs elsewhere.
pub trait Remote: Send + Sync {
    /// Builds `deploy`'s job on the processes it has: every subtask placed, built and
    /// restored, none started. Every error names its operator (and subtask).
    fn deploy<'a>(&'a self, deploy: Deploy<'a>)
    -> BoxFuture<'a, Result<Deployed, Vec<BuildError>>>;
}

/// Where a job's subtasks run for one run of its coordinator.
pub(super) enum Placed {
    /// Here: tasks of this process.
    Here(Vec<super::subtask::Subtask>),
    /// Elsewhere: this many subtasks, driven through a session.
    Elsewhere(Box<dyn Session>, usize),
}
