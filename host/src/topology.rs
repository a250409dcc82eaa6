//! The job file (`job.toml`) and the validated [`Plan`] the runtime builds a job from.
//!
//! First step of every job: the file is parsed, every problem in it is collected (not just the
//! first), and the result is a `Plan` that names each operator by its stable id, with its role,
//! module, parallelism, config, grants and the edges between operators in topological order.
//! Pure: reading the file is the caller's business, so is checking that modules exist.
//!
//! The checks, one function per step, are in `validate`; what they find is a [`Problem`].

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::connectors::config::{ConnectorConfig, ConnectorKind};
use crate::ids::OperatorId;
pub use crate::ids::Role;
pub use crate::time::watermarks::Strategy as WatermarkStrategy;

mod problem;
mod validate;
pub use problem::Problem;

/// Default checkpoint interval when the job file names none.
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Default number of completed checkpoints retention keeps.
pub const CHECKPOINTS_RETAINED_DEFAULT: u32 = 3;
/// Default number of key groups: the largest parallelism a keyed operator can ever have.
pub const MAX_PARALLELISM_DEFAULT: u32 = 128;
/// Largest parallelism of one operator this host accepts.
pub const PARALLELISM_MAX: u32 = 256;
/// Parallelism of an operator whose entry names none.
pub const PARALLELISM_DEFAULT: u32 = 1;
/// Smallest `memory_bytes_max` accepted: one WebAssembly page.
pub const MEMORY_BYTES_MIN: u64 = 1 << 16;

/// The job file as written, before validation.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// A human name for the job.
    #[serde(default)]
    pub name: Option<String>,
    /// Milliseconds between periodic checkpoints; 0 disables them.
    #[serde(default)]
    pub checkpoint_interval_ms: Option<u64>,
    /// How many completed checkpoints to keep; savepoints are never counted.
    #[serde(default)]
    pub checkpoints_retained: Option<u32>,
    /// Number of key groups, fixed for the life of the job's state.
    #[serde(default)]
    pub max_parallelism: Option<u32>,
    /// What to do when a guest traps or exceeds a limit.
    #[serde(default)]
    pub restart: RestartStrategy,
    /// The operators, each with a stable id.
    #[serde(default, rename = "operators")]
    pub operators: Vec<OperatorSpec>,
    /// The edges between operators.
    #[serde(default)]
    pub edges: Vec<EdgeSpec>,
}

/// One operator as written in the job file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OperatorSpec {
    /// Stable id: state is mapped to operators by it, across upgrades.
    pub id: String,
    /// Which world the component targets.
    pub role: Role,
    /// Path of the `.wasm` component, relative to the job file's folder (or a `connector`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<PathBuf>,
    /// A connector built into the host, instead of a `module` (its `config` is the
    /// connector's, [`ConnectorConfig`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connector: Option<ConnectorKind>,
    /// Number of subtasks.
    #[serde(default = "parallelism_default")]
    pub parallelism: u32,
    /// Key/value configuration handed to the component's `init`.
    #[serde(default)]
    pub config: toml::Table,
    /// Host folders the component may see (sinks writing files, sources reading them).
    #[serde(default)]
    pub mounts: Vec<Mount>,
    /// Whether the component may read the real clocks; without this grant it sees time stand
    /// still at the Unix epoch.
    #[serde(default)]
    pub clock: bool,
    /// Sources only: upper bound on records emitted per second, per subtask.
    #[serde(default)]
    pub records_per_second_max: Option<u64>,
    /// Sources only: how the host derives watermarks from the timestamps the source emits,
    /// and when a quiet source subtask counts as idle.
    #[serde(default)]
    pub watermark: Option<WatermarkStrategy>,
    /// Largest linear memory one instance may grow to.
    #[serde(default)]
    pub memory_bytes_max: Option<u64>,
    /// Longest one guest call may run before it is interrupted.
    #[serde(default)]
    pub call_ms_max: Option<u64>,
}

/// How a job recovers from a failed subtask: restart every subtask from the latest completed
/// checkpoint, up to `attempts` times, `delay_ms` apart. No restarts by default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RestartStrategy {
    /// Restarts allowed over the life of the job.
    #[serde(default)]
    pub attempts: u32,
    /// Pause before each restart.
    #[serde(default)]
    pub delay_ms: u64,
}

fn parallelism_default() -> u32 {
    PARALLELISM_DEFAULT
}

/// A host folder granted to a component through WASI.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mount {
    /// Host folder, relative to the job file's folder.
    pub host: PathBuf,
    /// Where the guest sees it, e.g. `/output`.
    pub guest: String,
    /// Whether the guest may create and change files in it.
    #[serde(default)]
    pub writable: bool,
}

/// An edge as written in the job file.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    /// Upstream operator id.
    pub from: String,
    /// Downstream operator id.
    pub to: String,
    /// How records are distributed over the downstream subtasks.
    #[serde(default)]
    pub partition: Partition,
}

/// How an edge distributes records over the downstream subtasks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Partition {
    /// Subtask i feeds subtask i; both sides have the same parallelism.
    #[default]
    Forward,
    /// By a stable hash of the record key, through key groups.
    KeyBy,
    /// Every record to every downstream subtask.
    Broadcast,
    /// Batches round-robin over the downstream subtasks.
    Rebalance,
}

/// A validated operator.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorPlan {
    /// Stable id.
    pub id: OperatorId,
    /// Role (world).
    pub role: Role,
    /// What runs its subtasks: a component, or a connector built into the host.
    pub implementation: Implementation,
    /// Number of subtasks.
    pub parallelism: u32,
    /// Configuration as string pairs, sorted by key.
    pub config: Vec<(String, String)>,
    /// Granted host folders, resolved against the job file's folder.
    pub mounts: Vec<Mount>,
    /// Whether the real clocks are granted.
    pub clock: bool,
    /// Sources only: throttle, per subtask.
    pub records_per_second_max: Option<u64>,
    /// Sources only: the watermark strategy, if the job file sets one.
    pub watermark: Option<WatermarkStrategy>,
    /// Memory limit per instance, if the job file sets one.
    pub memory_bytes_max: Option<u64>,
    /// Deadline per guest call, if the job file sets one.
    pub call_ms_max: Option<u64>,
}

/// What runs an operator's subtasks.
#[derive(Clone, Debug, PartialEq)]
pub enum Implementation {
    /// A WebAssembly component: the path of its `.wasm` file, resolved against the job file's
    /// folder.
    Module(PathBuf),
    /// A connector built into the host (`crate::connectors`), with its configuration.
    Connector(ConnectorConfig),
}

impl OperatorPlan {
    /// The path of its component, if it runs one (not a connector).
    pub fn module(&self) -> Option<&Path> {
        match &self.implementation {
            Implementation::Module(path) => Some(path),
            Implementation::Connector(_) => None,
        }
    }

    /// Its connector's configuration, if it is one.
    pub fn connector(&self) -> Option<&ConnectorConfig> {
        match &self.implementation {
            Implementation::Connector(config) => Some(config),
            Implementation::Module(_) => None,
        }
    }
}

/// A validated edge between two operators of the plan, by index into [`Plan::operators`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EdgePlan {
    /// Upstream operator index.
    pub from: usize,
    /// Downstream operator index.
    pub to: usize,
    /// Distribution.
    pub partition: Partition,
}

/// A validated job: what the runtime builds.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Human name.
    pub name: String,
    /// Operators in topological order: every edge goes from a lower to a higher index.
    pub operators: Vec<OperatorPlan>,
    /// Edges.
    pub edges: Vec<EdgePlan>,
    /// Periodic checkpoint interval; 0 disables periodic checkpoints.
    pub checkpoint_interval_ms: u64,
    /// Completed checkpoints kept by retention.
    pub checkpoints_retained: u32,
    /// Number of key groups.
    pub max_parallelism: u32,
    /// Recovery from failures.
    pub restart: RestartStrategy,
}

/// A job file that cannot run, with every problem found.
#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    /// Not valid TOML, or fields of the wrong type.
    #[error("job file is not valid: {0}")]
    Syntax(String),
    /// Valid TOML describing an impossible job: every problem, in the order found.
    #[error("job file is not valid:\n  - {}", problem::bulleted(.0))]
    Invalid(Vec<Problem>),
}

impl Plan {
    /// Parses and validates a job file's text. `base` is the job file's folder: relative module
    /// and mount paths are resolved against it. Performs no I/O.
    pub fn from_toml(text: &str, base: &Path) -> Result<Plan, TopologyError> {
        let file: JobFile =
            toml::from_str(text).map_err(|e| TopologyError::Syntax(e.to_string()))?;
        Plan::from_job_file(file, base)
    }

    /// Validates a parsed job file, collecting every problem. Performs no I/O.
    pub fn from_job_file(file: JobFile, base: &Path) -> Result<Plan, TopologyError> {
        let mut problems = Vec::new();
        let max_parallelism = validate::settings(&file, &mut problems);
        let index_of = validate::operators(&file.operators, max_parallelism, &mut problems);
        let edges = validate::edges(&file, &index_of, &mut problems);
        validate::roles(&file.operators, &edges, &mut problems);
        validate::keyed_inputs(&file.operators, &edges, &mut problems);
        let order = validate::topological_order(file.operators.len(), &edges);
        if order.is_none() {
            problems.push(Problem::Cycle);
        }
        match order {
            Some(order) if problems.is_empty() => {
                Ok(assemble(file, base, max_parallelism, &order, edges))
            }
            _ => Err(TopologyError::Invalid(problems)),
        }
    }

    /// The operator with this id, if the plan has it.
    pub fn operator(&self, id: &OperatorId) -> Option<&OperatorPlan> {
        self.operators.iter().find(|op| &op.id == id)
    }

    /// The edges that end at operator `index`.
    pub fn inputs(&self, index: usize) -> impl Iterator<Item = &EdgePlan> {
        self.edges.iter().filter(move |e| e.to == index)
    }

    /// The edges that start at operator `index`.
    pub fn outputs(&self, index: usize) -> impl Iterator<Item = &EdgePlan> {
        self.edges.iter().filter(move |e| e.from == index)
    }
}

/// The plan of a valid job file: its operators in `order`, its edges renumbered to match, and
/// the defaults of what it leaves unset.
fn assemble(
    file: JobFile,
    base: &Path,
    max_parallelism: u32,
    order: &[usize],
    edges: Vec<EdgePlan>,
) -> Plan {
    let mut position = vec![0; order.len()];
    for (pos, &i) in order.iter().enumerate() {
        position[i] = pos;
    }
    let mut specs: Vec<Option<OperatorSpec>> = file.operators.into_iter().map(Some).collect();
    let operators = order
        .iter()
        .map(|&i| resolve_operator(specs[i].take().expect("each index once"), base))
        .collect();
    let edges = edges
        .into_iter()
        .map(|e| EdgePlan {
            from: position[e.from],
            to: position[e.to],
            partition: e.partition,
        })
        .collect();
    Plan {
        name: file.name.unwrap_or_else(|| "job".to_owned()),
        operators,
        edges,
        checkpoint_interval_ms: file
            .checkpoint_interval_ms
            .unwrap_or(CHECKPOINT_INTERVAL_MS_DEFAULT),
        checkpoints_retained: file
            .checkpoints_retained
            .unwrap_or(CHECKPOINTS_RETAINED_DEFAULT),
        max_parallelism,
        restart: file.restart,
    }
}

fn resolve_operator(spec: OperatorSpec, base: &Path) -> OperatorPlan {
    let implementation = match (&spec.module, spec.connector) {
        (Some(module), None) => Implementation::Module(base.join(module)),
        (None, Some(kind)) => {
            let config = ConnectorConfig::parse(kind, spec.role, spec.parallelism, &spec.config);
            Implementation::Connector(config.expect("validated").resolved_against(base))
        }
        _ => unreachable!("validated: a module or a connector"),
    };
    let mut config: Vec<(String, String)> = spec
        .config
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                toml::Value::String(s) => s,
                other => other.to_string(),
            };
            (k, v)
        })
        .collect();
    config.sort();
    OperatorPlan {
        id: spec.id.parse().expect("validated"),
        role: spec.role,
        implementation,
        parallelism: spec.parallelism,
        config,
        mounts: spec
            .mounts
            .into_iter()
            .map(|m| Mount {
                host: base.join(m.host),
                ..m
            })
            .collect(),
        clock: spec.clock,
        records_per_second_max: spec.records_per_second_max,
        watermark: spec.watermark,
        memory_bytes_max: spec.memory_bytes_max,
        call_ms_max: spec.call_ms_max,
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
