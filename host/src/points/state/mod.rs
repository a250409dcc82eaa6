//! `host state`: a point's state seen and changed offline, by the host alone.
//!
//! Keyed state is in one portable envelope whatever language wrote it
//! (`docs/state-format.md`), so the host reads it without any guest code: [`read`] gives every
//! key and value of an operator (its key groups' chains resolved: whole, then deltas) and its
//! operator state, as JSON lines or Parquet columns, one subtask's state in memory at a time.
//! [`write()`] makes a new savepoint with keys upserted or deleted (a delta appended to each
//! group changed; every segment of the original linked, as a checkpoint links them), [`bootstrap`] one from data for
//! a job that never ran, [`repartition`] one with another number of key groups, every key
//! placed again by [`crate::key_group`]. None of them changes the point it reads; each new
//! point records the point it came from (its job is named after the tool, e.g.
//! `state-write-…`, and hangs under the original in `host savepoints --tree`).
//!
//! State in another encoding (postcard, which the Rust SDK's `encode_state` writes) is refused
//! with what it looks like ([`envelope::Foreign`]).

mod bootstrap;
pub mod envelope;
mod input;
pub mod json;
pub mod msgpack;
mod parquet;
mod read;
mod repartition;
pub mod shape;
mod walk;
mod write;

use std::fmt;
use std::path::PathBuf;

pub use bootstrap::{Bootstrap, bootstrap};
pub use read::{Format, ReadRequest, ReadSummary, read};
pub use repartition::repartition;
pub use write::{Edit, Edited, write};

use crate::ids::{OperatorId, SavepointId};
use crate::store::StoreError;
use crate::topology::TopologyError;

/// Why a state command is refused or failed: each names the operator, key group, file and
/// line at fault.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The point has no such operator.
    #[error("{point} has no operator `{operator}` (it has {})", names(.known))]
    UnknownOperator {
        /// The point.
        point: String,
        /// The operator asked for.
        operator: OperatorId,
        /// The operators it has.
        known: Vec<OperatorId>,
    },
    /// A blob is not in the portable envelope.
    #[error(
        "operator `{operator}`: its {place} is not in the portable envelope \
         (docs/state-format.md), so the host cannot read it: {found}"
    )]
    Foreign {
        /// The operator.
        operator: OperatorId,
        /// Which blob.
        place: Place,
        /// What it is.
        found: envelope::Foreign,
    },
    /// A key group's chain is in the envelope but does not give a group's state.
    #[error("operator `{operator}`: key group {group} (subtask {subtask}): {problem}")]
    Malformed {
        /// The operator.
        operator: OperatorId,
        /// The key group.
        group: u32,
        /// The subtask holding it.
        subtask: u32,
        /// What is wrong.
        problem: envelope::GroupError,
    },
    /// The operator's keyed state is of several formats (or none, where one is needed).
    #[error("operator `{operator}`: {problem}")]
    Formats {
        /// The operator.
        operator: OperatorId,
        /// What is wrong.
        problem: String,
    },
    /// A point of a format older than key-group chains (`host state` writes only those).
    #[error(
        "{point} was written by an older host (its state files are not kept as key-group \
         chains): resume it with this host and take a savepoint, then use that one"
    )]
    OldLayout {
        /// The point.
        point: String,
    },
    /// A line of an input file is not what it must be.
    #[error("{}:{line}: {problem}", .path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// Its line, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A flag's value is not usable.
    #[error("{0}")]
    Flag(String),
    /// The savepoint to write exists already.
    #[error("savepoint `{0}` exists already: choose a new id (see `host savepoints`)")]
    Exists(SavepointId),
    /// The job file of `bootstrap` is not usable.
    #[error("{}: {source}", .path.display())]
    JobFile {
        /// The job file.
        path: PathBuf,
        /// Why.
        source: TopologyError,
    },
    /// Reading an input or a module, or writing the output, failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Writing Parquet failed.
    #[error("writing Parquet: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// Reading the point or writing the new one failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a blob lies in an operator's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// A subtask's operator state.
    OperatorState {
        /// The subtask.
        subtask: u32,
    },
    /// A key group's state.
    KeyGroup {
        /// The key group.
        group: u32,
        /// The subtask holding it.
        subtask: u32,
    },
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Place::OperatorState { subtask } => write!(f, "operator state (subtask {subtask})"),
            Place::KeyGroup { group, subtask } => {
                write!(f, "key group {group} (subtask {subtask})")
            }
        }
    }
}

fn names(ids: &[OperatorId]) -> String {
    let quoted: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
    quoted.join(", ")
}
