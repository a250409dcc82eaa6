//! What can be wrong with a job file that parses: one [`Problem`] per kind.
//!
//! Validation ([`super::Plan::from_job_file`]) collects every problem it finds, in the order it
//! finds them, into [`super::TopologyError::Invalid`]; each problem's message is one line of
//! that error as a user sees it. Operators are named by their id as written: a per-operator
//! problem is reported even when the id itself is not a valid one.

use crate::connectors::config::ConfigError;
use crate::ids::OperatorId;

use super::MEMORY_BYTES_MIN;

/// One problem of a job file that parses but cannot run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// `max_parallelism` is 0 or above what the host supports.
    #[error("max_parallelism {value} is not within 1..={limit}")]
    MaxParallelism {
        /// As written.
        value: u32,
        /// The largest accepted.
        limit: u32,
    },
    /// `checkpoints_retained = 0`: nothing left to recover from.
    #[error(
        "checkpoints_retained 0 would keep no checkpoint to recover from: retain at least 1 \
         (savepoints are kept regardless)"
    )]
    NoCheckpointRetained,
    /// The job lists no operator at all.
    #[error("the job has no operators")]
    NoOperators,
    /// An operator's id is not a valid id.
    #[error("operator {position}: {reason}")]
    InvalidId {
        /// The operator's place in the file, counting from 1.
        position: usize,
        /// The id as written.
        id: String,
        /// Why it is not valid.
        reason: String,
    },
    /// Two operators share an id.
    #[error("operator id `{0}` is used more than once")]
    DuplicateId(OperatorId),
    /// An operator's parallelism is 0 or above the limit.
    #[error("operator `{operator}`: parallelism {value} is not within 1..={limit}")]
    Parallelism {
        /// The operator.
        operator: String,
        /// As written.
        value: u32,
        /// The largest accepted: the host's limit or the job's `max_parallelism`, the smaller.
        limit: u32,
    },
    /// `records_per_second_max` on an operator that is not a source.
    #[error("operator `{operator}`: only sources take records_per_second_max")]
    RateOfNonSource {
        /// The operator.
        operator: String,
    },
    /// `memory_bytes_max` below one page, or `call_ms_max = 0`.
    #[error(
        "operator `{operator}`: memory_bytes_max must be at least {MEMORY_BYTES_MIN} (one page) \
         and call_ms_max above 0"
    )]
    LimitTooLow {
        /// The operator.
        operator: String,
    },
    /// `records_per_second_max = 0`.
    #[error("operator `{operator}`: records_per_second_max must be above 0")]
    RateZero {
        /// The operator.
        operator: String,
    },
    /// A `watermark` strategy on an operator that is not a source.
    #[error(
        "operator `{operator}`: only sources take a watermark strategy (downstream, a \
         subtask's watermark is the least of its inputs')"
    )]
    WatermarkOfNonSource {
        /// The operator.
        operator: String,
    },
    /// `watermark = { idle_ms = 0 }`: idle before it could ever emit a record.
    #[error("operator `{operator}`: watermark idle_ms must be above 0 (or left out: never idle)")]
    IdleZero {
        /// The operator.
        operator: String,
    },
    /// An edge starts at an operator the job does not have.
    #[error("edge {from} -> {to}: unknown operator `{from}` (from)")]
    UnknownUpstream {
        /// The edge's upstream id, as written.
        from: String,
        /// The edge's downstream id, as written.
        to: String,
    },
    /// An edge ends at an operator the job does not have.
    #[error("edge {from} -> {to}: unknown operator `{to}` (to)")]
    UnknownDownstream {
        /// The edge's upstream id, as written.
        from: String,
        /// The edge's downstream id, as written.
        to: String,
    },
    /// A forward edge between operators of different parallelism.
    #[error(
        "edge {from} -> {to}: a forward edge needs equal parallelism ({upstream} vs \
         {downstream}); use key-by or rebalance"
    )]
    ForwardParallelism {
        /// Upstream operator.
        from: OperatorId,
        /// Downstream operator.
        to: OperatorId,
        /// Upstream parallelism.
        upstream: u32,
        /// Downstream parallelism.
        downstream: u32,
    },
    /// The same edge twice.
    #[error("edge {from} -> {to} is listed twice")]
    DuplicateEdge {
        /// Upstream operator.
        from: OperatorId,
        /// Downstream operator.
        to: OperatorId,
    },
    /// A source with an incoming edge.
    #[error("operator `{operator}`: a source cannot have inputs")]
    SourceWithInputs {
        /// The operator.
        operator: String,
    },
    /// A source without an outgoing edge.
    #[error("operator `{operator}`: a source needs at least one outgoing edge")]
    SourceWithoutOutputs {
        /// The operator.
        operator: String,
    },
    /// A sink with an outgoing edge.
    #[error("operator `{operator}`: a sink cannot have outgoing edges")]
    SinkWithOutputs {
        /// The operator.
        operator: String,
    },
    /// A sink without an incoming edge.
    #[error("operator `{operator}`: a sink needs at least one incoming edge")]
    SinkWithoutInputs {
        /// The operator.
        operator: String,
    },
    /// An operator (role `operator`) missing its incoming or its outgoing edges.
    #[error("operator `{operator}`: an operator needs incoming and outgoing edges")]
    OperatorUnconnected {
        /// The operator.
        operator: String,
    },
    /// An operator with neither a `module` nor a `connector`.
    #[error("operator `{operator}`: give it a `module` (a .wasm component) or a `connector`")]
    NoImplementation {
        /// The operator.
        operator: String,
    },
    /// An operator with both a `module` and a `connector`.
    #[error("operator `{operator}`: give it a `module` or a `connector`, not both")]
    ModuleAndConnector {
        /// The operator.
        operator: String,
    },
    /// A connector with a guest's grants or limits (mounts, clock, memory, call deadline).
    #[error(
        "operator `{operator}`: a connector runs in the host, not as a guest: `mounts`, `clock`, \
         `memory_bytes_max` and `call_ms_max` do not apply"
    )]
    ConnectorGrants {
        /// The operator.
        operator: String,
    },
    /// A connector's `config` that its connector does not take.
    #[error("operator `{operator}`: {error}")]
    Connector {
        /// The operator.
        operator: String,
        /// What is wrong with it.
        error: ConfigError,
    },
    /// An upsert sink fed by an edge that is not key-by: its subtasks would apply one key's
    /// updates in no set order.
    #[error(
        "operator `{operator}`: an upsert sink applies each key's updates in order, so its \
         inputs must be `key-by` edges"
    )]
    UnkeyedInput {
        /// The operator.
        operator: String,
    },
    /// Operators, but none of them a source.
    #[error("the job has no source")]
    NoSource,
    /// The edges form a cycle.
    #[error("the edges form a cycle; a job must be a directed acyclic graph")]
    Cycle,
}

/// The problems' messages joined into the lines of a `  - ` list; the caller writes the first
/// bullet.
pub(super) fn bulleted(problems: &[Problem]) -> String {
    let lines: Vec<String> = problems.iter().map(Problem::to_string).collect();
    lines.join("\n  - ")
}
