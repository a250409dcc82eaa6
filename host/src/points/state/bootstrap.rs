//! `host state bootstrap`: a savepoint to start a job with one operator's keyed state loaded
//! from data, as Flink's bootstrap does.
//!
//! The point holds that operator only (every other operator of the job starts empty), at the
//! job file's parallelism and `max_parallelism`, each key group whole, in the format and
//! version given. It is numbered 0, so a job resuming from it numbers its checkpoints from 1;
//! it records no job definition (`run` and `check` take the job file). The values must agree
//! with one another in shape: the host has no schema, and the module's `restore` is the
//! judge of the rest (`host check JOB.toml --from NEW`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::envelope;
use super::input::{Row, Rows, read_rows};
use super::json::to_json;
use super::shape::Shape;
use super::write::{Edited, now_unix_ms};
use super::{StateError, msgpack::Value};
use crate::barrier::BarrierKind;
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId};
use crate::key_group::{KEY_GROUP_FUNCTION, key_group, subtask_of_key_group};
use crate::snapshot::{Held, Piece};
use crate::store::{Layout, Metadata, OperatorState, StateFile, StateLayout, Store};
use crate::topology::{OperatorPlan, Plan};

/// What the module that "wrote" a bootstrapped state is, as `restore`'s origin tells a module.
pub const BOOTSTRAP_MODULE_NAME: &str = "host state bootstrap";

/// What `host state bootstrap` writes.
#[derive(Clone, Debug)]
pub struct Bootstrap {
    /// The job file.
    pub job_file: PathBuf,
    /// The operator whose state it loads.
    pub operator: OperatorId,
    /// The rows, JSON lines.
    pub rows: PathBuf,
    /// The state's format name.
    pub format: String,
    /// The state's version.
    pub version: u32,
    /// The new savepoint's id.
    pub to: SavepointId,
}

/// Writes the savepoint `request.to`.
pub fn bootstrap(store: &Store, request: &Bootstrap) -> Result<Edited, StateError> {
    let io_error = |path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io { path, source }
    };
    let text = std::fs::read_to_string(&request.job_file).map_err(io_error(&request.job_file))?;
    let absolute = std::path::absolute(&request.job_file).map_err(io_error(&request.job_file))?;
    let base = absolute.parent().unwrap_or(Path::new("/"));
    let plan = Plan::from_toml(&text, base).map_err(|source| StateError::JobFile {
        path: request.job_file.clone(),
        source,
    })?;
    let op = plan
        .operator(&request.operator)
        .ok_or_else(|| StateError::UnknownOperator {
            point: format!("the job file {}", request.job_file.display()),
            operator: request.operator.clone(),
            known: plan.operators.iter().map(|op| op.id.clone()).collect(),
        })?;
    let to = store.layout().savepoint(&request.to);
    if store.has_point(&to)? {
        return Err(StateError::Exists(request.to.clone()));
    }
    let rows = read_rows(&request.rows, Rows::Upserts)?;
    let groups = by_group(&rows, request, plan.max_parallelism)?;
    let Some(module_path) = op.module() else {
        return Err(StateError::Formats {
            operator: op.id.clone(),
            problem: "a connector keeps no keyed state to bootstrap".to_owned(),
        });
    };
    let module = std::fs::read(module_path).map_err(io_error(module_path))?;
    let metadata = metadata(&plan, op, text, crate::ids::sha256_hex(&module));
    let mut deriving = store.derive(None, &to, metadata)?;
    let mut states: Vec<Held> = vec![Held::default(); op.parallelism as usize];
    for (&group, entries) in &groups {
        let subtask = subtask_of_key_group(group, plan.max_parallelism, op.parallelism);
        let entries = entries.iter().map(|(k, v)| (*k, *v));
        let piece = envelope::seal_whole(&request.format, request.version, entries);
        let held = &mut states[subtask as usize];
        held.key_groups.insert(group, vec![Piece::new(piece)]);
    }
    for (subtask, held) in states.into_iter().enumerate() {
        deriving.write(&op.id, subtask as u32, held)?;
    }
    let (to, written) = deriving.publish()?;
    Ok(Edited {
        dir: to,
        upserted: rows.len(),
        deleted: 0,
        groups: groups.len(),
        format: (request.format.clone(), request.version),
        written,
    })
}

/// The rows' keys and values by key group, keys in byte order, every row checked: its key
/// group and version, if given, and that its value's shape agrees with the rows before it.
fn by_group<'r>(
    rows: &'r [Row],
    request: &Bootstrap,
    max_parallelism: u32,
) -> Result<BTreeMap<u32, BTreeMap<&'r [u8], &'r Value>>, StateError> {
    let mut groups: BTreeMap<u32, BTreeMap<&[u8], &Value>> = BTreeMap::new();
    let mut shape = Shape::Unknown;
    let mut first_line = 0;
    for row in rows {
        let problem = |problem: String| StateError::Input {
            path: request.rows.clone(),
            line: row.line,
            problem,
        };
        let value = row.value.as_ref().expect("an upsert has a value");
        let group = key_group(&row.key, max_parallelism);
        if let Some(said) = row.key_group.filter(|&said| said != group) {
            return Err(problem(format!(
                "the key is in key group {group} of the job's {max_parallelism}, the row says {said} \
                 (rows of a point of another max_parallelism? drop `key_group`)"
            )));
        }
        if let Some(said) = row.version.filter(|&said| said != request.version) {
            let version = request.version;
            return Err(problem(format!(
                "the row's value is of version {said}, not {version} (--state-version)"
            )));
        }
        let merged = shape.clone().merge(Shape::of(value));
        if merged.has_any() && !shape.has_any() {
            return Err(problem(format!(
                "the value {} does not fit the values before it (from line {first_line}): they are {}",
                to_json(value),
                shape.describe()
            )));
        }
        if first_line == 0 {
            first_line = row.line;
        }
        shape = merged;
        groups.entry(group).or_default().insert(&row.key, value);
    }
    Ok(groups)
}

/// The point's metadata: the one operator, its state files to be filled in.
fn metadata(plan: &Plan, op: &OperatorPlan, job_file: String, module_sha256: String) -> Metadata {
    let files = (0..op.parallelism).map(|subtask| StateFile {
        subtask,
        file: Layout::state_file_name(op.id.as_str(), subtask),
        len: 0,
        checksum: [0; 16],
    });
    Metadata {
        job: JobId::generate_for("state-bootstrap"),
        checkpoint: CheckpointId(0),
        kind: BarrierKind::Savepoint,
        completed_unix_ms: now_unix_ms(),
        job_file,
        max_parallelism: plan.max_parallelism,
        key_group_function: KEY_GROUP_FUNCTION.to_owned(),
        state_layout: StateLayout::Timed,
        operators: vec![OperatorState {
            id: op.id.clone(),
            role: op.role,
            module_sha256,
            module_name: BOOTSTRAP_MODULE_NAME.to_owned(),
            module_version: env!("CARGO_PKG_VERSION").to_owned(),
            parallelism: op.parallelism,
            files: files.collect(),
        }],
        definition: None,
        resumed_from: None,
        generation: None,
    }
}
