//! The checks of a parsed job file, one function per step of [`super::Plan::from_job_file`]:
//! job-wide settings, operators, edges, roles, then the order (which finds cycles).
//!
//! Each step appends what it finds to the one list of [`Problem`]s, so that a job file's every
//! problem is reported at once, and returns what the later steps need. Pure: no I/O.

use std::collections::{BTreeMap, BTreeSet};

use crate::connectors::config::ConnectorConfig;
use crate::ids::OperatorId;
use crate::key_group::MAX_PARALLELISM_LIMIT;

use super::{
    EdgePlan, JobFile, MAX_PARALLELISM_DEFAULT, MEMORY_BYTES_MIN, OperatorSpec, PARALLELISM_MAX,
    Partition, Problem, Role,
};

/// Checks the job-wide settings; returns the number of key groups, the default if unset.
pub(super) fn settings(file: &JobFile, problems: &mut Vec<Problem>) -> u32 {
    let max_parallelism = file.max_parallelism.unwrap_or(MAX_PARALLELISM_DEFAULT);
    if max_parallelism == 0 || max_parallelism > MAX_PARALLELISM_LIMIT {
        problems.push(Problem::MaxParallelism {
            value: max_parallelism,
            limit: MAX_PARALLELISM_LIMIT,
        });
    }
    if file.checkpoints_retained == Some(0) {
        problems.push(Problem::NoCheckpointRetained);
    }
    if file.operators.is_empty() {
        problems.push(Problem::NoOperators);
    }
    max_parallelism
}

/// Checks each operator's id and limits; returns the file index of each valid id (of the last
/// operator, where an id is used more than once).
pub(super) fn operators(
    operators: &[OperatorSpec],
    max_parallelism: u32,
    problems: &mut Vec<Problem>,
) -> BTreeMap<OperatorId, usize> {
    let parallelism_limit = PARALLELISM_MAX.min(max_parallelism);
    let mut index_of = BTreeMap::new();
    for (i, op) in operators.iter().enumerate() {
        match op.id.parse::<OperatorId>() {
            Err(reason) => problems.push(Problem::InvalidId {
                position: i + 1,
                id: op.id.clone(),
                reason,
            }),
            Ok(id) => {
                if index_of.insert(id.clone(), i).is_some() {
                    problems.push(Problem::DuplicateId(id));
                }
            }
        }
        limits(op, parallelism_limit, problems);
        implementation(op, problems);
    }
    index_of
}

/// Checks that an operator names a module or a connector (not both), that a connector's
/// config is its connector's, and that a connector asks for no grant or limit of a guest.
fn implementation(op: &OperatorSpec, problems: &mut Vec<Problem>) {
    let operator = || op.id.clone();
    let Some(kind) = op.connector else {
        if op.module.is_none() {
            problems.push(Problem::NoImplementation {
                operator: operator(),
            });
        }
        return;
    };
    if op.module.is_some() {
        problems.push(Problem::ModuleAndConnector {
            operator: operator(),
        });
    }
    let guest_only = !op.mounts.is_empty()
        || op.clock
        || op.memory_bytes_max.is_some()
        || op.call_ms_max.is_some();
    if guest_only {
        problems.push(Problem::ConnectorGrants {
            operator: operator(),
        });
    }
    if let Err(error) = ConnectorConfig::parse(kind, op.role, op.parallelism, &op.config) {
        problems.push(Problem::Connector {
            operator: operator(),
            error,
        });
    }
}

/// Checks that a connector that needs its input keyed (an upsert sink) gets it over key-by
/// edges only.
pub(super) fn keyed_inputs(
    operators: &[OperatorSpec],
    edges: &[EdgePlan],
    problems: &mut Vec<Problem>,
) {
    for (i, op) in operators.iter().enumerate() {
        let Some(kind) = op.connector else { continue };
        let parsed = ConnectorConfig::parse(kind, op.role, op.parallelism, &op.config);
        if !parsed.is_ok_and(|config| config.needs_keyed_input()) {
            continue;
        }
        let unkeyed = edges
            .iter()
            .any(|e| e.to == i && e.partition != Partition::KeyBy);
        if unkeyed {
            problems.push(Problem::UnkeyedInput {
                operator: op.id.clone(),
            });
        }
    }
}

/// Checks one operator's parallelism against `parallelism_limit`, and its other limits.
fn limits(op: &OperatorSpec, parallelism_limit: u32, problems: &mut Vec<Problem>) {
    let operator = || op.id.clone();
    if op.parallelism == 0 || op.parallelism > parallelism_limit {
        problems.push(Problem::Parallelism {
            operator: operator(),
            value: op.parallelism,
            limit: parallelism_limit,
        });
    }
    if op.records_per_second_max.is_some() && op.role != Role::Source {
        problems.push(Problem::RateOfNonSource {
            operator: operator(),
        });
    }
    if op.memory_bytes_max.is_some_and(|m| m < MEMORY_BYTES_MIN) || op.call_ms_max == Some(0) {
        problems.push(Problem::LimitTooLow {
            operator: operator(),
        });
    }
    if op.records_per_second_max == Some(0) {
        problems.push(Problem::RateZero {
            operator: operator(),
        });
    }
    if op.watermark.is_some() && op.role != Role::Source {
        problems.push(Problem::WatermarkOfNonSource {
            operator: operator(),
        });
    }
    if op.watermark.is_some_and(|w| w.idle_ms == Some(0)) {
        problems.push(Problem::IdleZero {
            operator: operator(),
        });
    }
}

/// Checks each edge's ends, partition and uniqueness; returns the edges whose ends both exist,
/// by file index.
pub(super) fn edges(
    file: &JobFile,
    index_of: &BTreeMap<OperatorId, usize>,
    problems: &mut Vec<Problem>,
) -> Vec<EdgePlan> {
    let known = |id: &str| {
        let id: OperatorId = id.parse().ok()?;
        let index = *index_of.get(&id)?;
        Some((id, index))
    };
    let mut edges = Vec::new();
    for edge in &file.edges {
        let (up, down) = (known(&edge.from), known(&edge.to));
        let written = || (edge.from.clone(), edge.to.clone());
        if up.is_none() {
            let (from, to) = written();
            problems.push(Problem::UnknownUpstream { from, to });
        }
        if down.is_none() {
            let (from, to) = written();
            problems.push(Problem::UnknownDownstream { from, to });
        }
        let (Some((from, up)), Some((to, down))) = (up, down) else {
            continue;
        };
        let (upstream, downstream) = (
            file.operators[up].parallelism,
            file.operators[down].parallelism,
        );
        if edge.partition == Partition::Forward && upstream != downstream {
            problems.push(Problem::ForwardParallelism {
                from: from.clone(),
                to: to.clone(),
                upstream,
                downstream,
            });
        }
        if edges
            .iter()
            .any(|e: &EdgePlan| e.from == up && e.to == down)
        {
            problems.push(Problem::DuplicateEdge { from, to });
        }
        edges.push(EdgePlan {
            from: up,
            to: down,
            partition: edge.partition,
        });
    }
    edges
}

/// Checks that each operator's edges fit its role, and that the job has a source.
pub(super) fn roles(operators: &[OperatorSpec], edges: &[EdgePlan], problems: &mut Vec<Problem>) {
    for (i, op) in operators.iter().enumerate() {
        let has_inputs = edges.iter().any(|e| e.to == i);
        let has_outputs = edges.iter().any(|e| e.from == i);
        let operator = op.id.clone();
        let problem = match op.role {
            Role::Source if has_inputs => Some(Problem::SourceWithInputs { operator }),
            Role::Source if !has_outputs => Some(Problem::SourceWithoutOutputs { operator }),
            Role::Sink if has_outputs => Some(Problem::SinkWithOutputs { operator }),
            Role::Sink if !has_inputs => Some(Problem::SinkWithoutInputs { operator }),
            Role::Operator if !has_inputs || !has_outputs => {
                Some(Problem::OperatorUnconnected { operator })
            }
            _ => None,
        };
        problems.extend(problem);
    }
    if !operators.iter().any(|op| op.role == Role::Source) && !operators.is_empty() {
        problems.push(Problem::NoSource);
    }
}

/// Kahn's algorithm, stable in the file's order; `None` if the edges form a cycle.
pub(super) fn topological_order(count: usize, edges: &[EdgePlan]) -> Option<Vec<usize>> {
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
