//! The job file (`job.toml`) and the validated [`Plan`] the runtime builds a job from.
//!
//! First step of every job: the file is parsed, every problem in it is collected (not just the
//! first), and the result is a `Plan` that names each operator by its stable id, with its role,
//! module, parallelism, config, grants and the edges between operators in topological order.
//! Pure: reading the file is the caller's business, so is checking that modules exist.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ids::OperatorId;
pub use crate::ids::Role;
use crate::key_group::MAX_PARALLELISM_LIMIT;

/// Default checkpoint interval when the job file names none.
pub const CHECKPOINT_INTERVAL_MS_DEFAULT: u64 = 1_000;
/// Default number of completed checkpoints retention keeps.
pub const CHECKPOINTS_RETAINED_DEFAULT: u32 = 3;
/// Default number of key groups: the largest parallelism a keyed operator can ever have.
pub const MAX_PARALLELISM_DEFAULT: u32 = 128;
/// Largest parallelism of one operator this host accepts.
pub const PARALLELISM_MAX: u32 = 256;

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
    /// Path of the `.wasm` component, relative to the job file's folder.
    pub module: PathBuf,
    /// Number of subtasks.
    #[serde(default = "one")]
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

fn one() -> u32 {
    1
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
    /// Absolute or job-relative path to the component, resolved against the job file's folder.
    pub module: PathBuf,
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
    /// Memory limit per instance, if the job file sets one.
    pub memory_bytes_max: Option<u64>,
    /// Deadline per guest call, if the job file sets one.
    pub call_ms_max: Option<u64>,
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
    /// Valid TOML describing an impossible job.
    #[error("job file is not valid:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
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
        let mut errors = Vec::new();
        let max_parallelism = file.max_parallelism.unwrap_or(MAX_PARALLELISM_DEFAULT);
        if max_parallelism == 0 || max_parallelism > MAX_PARALLELISM_LIMIT {
            errors.push(format!(
                "max_parallelism {max_parallelism} is not within 1..={MAX_PARALLELISM_LIMIT}"
            ));
        }
        if file.checkpoints_retained == Some(0) {
            errors.push(
                "checkpoints_retained 0 would keep no checkpoint to recover from: retain at \
                 least 1 (savepoints are kept regardless)"
                    .to_owned(),
            );
        }
        if file.operators.is_empty() {
            errors.push("the job has no operators".to_owned());
        }

        let mut index_of = BTreeMap::new();
        for (i, op) in file.operators.iter().enumerate() {
            if let Err(e) = op.id.parse::<OperatorId>() {
                errors.push(format!("operator {}: {e}", i + 1));
            } else if index_of.insert(op.id.clone(), i).is_some() {
                errors.push(format!("operator id `{}` is used more than once", op.id));
            }
            if op.parallelism == 0 || op.parallelism > PARALLELISM_MAX.min(max_parallelism) {
                errors.push(format!(
                    "operator `{}`: parallelism {} is not within 1..={}",
                    op.id,
                    op.parallelism,
                    PARALLELISM_MAX.min(max_parallelism)
                ));
            }
            if op.records_per_second_max.is_some() && op.role != Role::Source {
                errors.push(format!(
                    "operator `{}`: only sources take records_per_second_max",
                    op.id
                ));
            }
            if op.memory_bytes_max.is_some_and(|m| m < 1 << 16) || op.call_ms_max == Some(0) {
                errors.push(format!(
                    "operator `{}`: memory_bytes_max must be at least 65536 (one page) and call_ms_max above 0",
                    op.id
                ));
            }
            if op.records_per_second_max == Some(0) {
                errors.push(format!(
                    "operator `{}`: records_per_second_max must be above 0",
                    op.id
                ));
            }
        }

        let mut edges = Vec::new();
        for edge in &file.edges {
            let from = index_of.get(&edge.from).copied();
            let to = index_of.get(&edge.to).copied();
            for (end, id, found) in [("from", &edge.from, from), ("to", &edge.to, to)] {
                if found.is_none() {
                    errors.push(format!(
                        "edge {} -> {}: unknown operator `{id}` ({end})",
                        edge.from, edge.to
                    ));
                }
            }
            let (Some(from), Some(to)) = (from, to) else {
                continue;
            };
            let (up, down) = (&file.operators[from], &file.operators[to]);
            if edge.partition == Partition::Forward && up.parallelism != down.parallelism {
                errors.push(format!(
                    "edge {} -> {}: a forward edge needs equal parallelism ({} vs {}); use key-by or rebalance",
                    edge.from, edge.to, up.parallelism, down.parallelism
                ));
            }
            if edges
                .iter()
                .any(|e: &EdgePlan| e.from == from && e.to == to)
            {
                errors.push(format!("edge {} -> {} is listed twice", edge.from, edge.to));
            }
            edges.push(EdgePlan {
                from,
                to,
                partition: edge.partition,
            });
        }

        check_roles(&file.operators, &edges, &mut errors);
        let order = match topological_order(file.operators.len(), &edges) {
            Some(order) => order,
            None => {
                errors.push(
                    "the edges form a cycle; a job must be a directed acyclic graph".to_owned(),
                );
                (0..file.operators.len()).collect()
            }
        };
        if !errors.is_empty() {
            return Err(TopologyError::Invalid(errors));
        }

        let position: Vec<usize> = {
            let mut p = vec![0; order.len()];
            for (pos, &i) in order.iter().enumerate() {
                p[i] = pos;
            }
            p
        };
        let mut operators: Vec<Option<OperatorSpec>> =
            file.operators.into_iter().map(Some).collect();
        let operators = order
            .iter()
            .map(|&i| resolve_operator(operators[i].take().expect("each index once"), base))
            .collect();
        let edges = edges
            .into_iter()
            .map(|e| EdgePlan {
                from: position[e.from],
                to: position[e.to],
                partition: e.partition,
            })
            .collect();
        Ok(Plan {
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
        })
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

fn check_roles(operators: &[OperatorSpec], edges: &[EdgePlan], errors: &mut Vec<String>) {
    for (i, op) in operators.iter().enumerate() {
        let has_inputs = edges.iter().any(|e| e.to == i);
        let has_outputs = edges.iter().any(|e| e.from == i);
        let problem = match op.role {
            Role::Source if has_inputs => Some("a source cannot have inputs"),
            Role::Source if !has_outputs => Some("a source needs at least one outgoing edge"),
            Role::Sink if has_outputs => Some("a sink cannot have outgoing edges"),
            Role::Sink if !has_inputs => Some("a sink needs at least one incoming edge"),
            Role::Operator if !has_inputs || !has_outputs => {
                Some("an operator needs incoming and outgoing edges")
            }
            _ => None,
        };
        if let Some(problem) = problem {
            errors.push(format!("operator `{}`: {problem}", op.id));
        }
    }
    if !operators.iter().any(|op| op.role == Role::Source) && !operators.is_empty() {
        errors.push("the job has no source".to_owned());
    }
}

/// Kahn's algorithm, stable in the file's order; `None` if the edges form a cycle.
fn topological_order(count: usize, edges: &[EdgePlan]) -> Option<Vec<usize>> {
    let mut indegree = vec![0usize; count];
    for e in edges {
        indegree[e.to] += 1;
    }
    let mut ready: BTreeSet<usize> = (0..count).filter(|&i| indegree[i] == 0).collect();
    let mut order = Vec::with_capacity(count);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for e in edges.iter().filter(|e| e.from == i) {
            indegree[e.to] -= 1;
            if indegree[e.to] == 0 {
                ready.insert(e.to);
            }
        }
    }
    (order.len() == count).then_some(order)
}

fn resolve_operator(spec: OperatorSpec, base: &Path) -> OperatorPlan {
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
        module: base.join(spec.module),
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
        memory_bytes_max: spec.memory_bytes_max,
        call_ms_max: spec.call_ms_max,
    }
}

#[cfg(test)]
mod tests;
