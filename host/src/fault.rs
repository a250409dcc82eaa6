//! Fault injection, for tests: the steps of a checkpoint's life where a crash or an I/O error
//! can strike ([`Phase`]), and the hook the state folder calls at each ([`FaultHook`]).
//!
//! The phases are always marked (a call to an absent hook costs a branch); a hook can only be
//! installed, and `host run`'s flags that install one (`--crash-at`, `--fail-write-at`) only
//! exist, in a build with the `fault-injection` feature, as the tests build the host. A
//! production build has no way to make the host abort itself or fail its own writes.

use std::io;
use std::sync::Arc;

use crate::ids::CheckpointId;

/// Called at each [`Phase`] of a checkpoint: a test may crash the process there, stall it, or
/// return an error that the step then fails with (a full disk).
pub type FaultHook = Arc<dyn Fn(Phase, CheckpointId) -> io::Result<()> + Send + Sync>;

/// The steps of a checkpoint's life where a crash or an I/O error can strike; fault-injection
/// tests aim at each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Phase {
    /// A subtask's state file is being written.
    StateWrite,
    /// `_metadata` is written, the folder not yet renamed into place.
    MetadataWritten,
    /// On an object store: `_metadata` is put, the fence not yet checked again (no sink may
    /// commit before it is). A local state folder has no such step.
    MetadataPut,
    /// The checkpoint is published; no sink has been told to commit.
    Published,
    /// A sink subtask has committed the checkpoint; others may not have.
    SinkCommitted,
    /// A resuming job has restored every subtask from checkpoint N; no sink has recovered.
    Restored,
    /// A sink subtask of a resuming job has recovered checkpoint N; others may not have.
    SinkRecovered,
    /// A live swap's new instances are restored beside the running ones from checkpoint N's
    /// snapshot; they have not caught up, and the old ones run on.
    SwapStaged,
    /// The job has ended and answered whoever stopped it; its process has not yet recorded
    /// how, nor let go of the job (N is always 0).
    Ended,
}

impl Phase {
    /// Every phase, in the order a checkpoint goes through them.
    pub const ALL: [Phase; 9] = [
        Phase::StateWrite,
        Phase::MetadataWritten,
        Phase::MetadataPut,
        Phase::Published,
        Phase::SinkCommitted,
        Phase::Restored,
        Phase::SinkRecovered,
        Phase::SwapStaged,
        Phase::Ended,
    ];

    /// The phase's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Phase::StateWrite => "state-write",
            Phase::MetadataWritten => "metadata-written",
            Phase::MetadataPut => "metadata-put",
            Phase::Published => "published",
            Phase::SinkCommitted => "sink-committed",
            Phase::Restored => "restored",
            Phase::SinkRecovered => "sink-recovered",
            Phase::SwapStaged => "swap-staged",
            Phase::Ended => "ended",
        }
    }
}

impl std::str::FromStr for Phase {
    type Err = String;
    fn from_str(s: &str) -> Result<Phase, String> {
        Phase::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Phase::ALL.iter().map(|p| p.name()).collect();
                format!("unknown phase `{s}` (one of {})", names.join(", "))
            })
    }
}
