//! `host state write`: a new savepoint with keys of one operator upserted or deleted.
//!
//! Each key group changed gets a delta appended to its chain (a group the point did not hold,
//! its whole state), in the state's format and its newest version, exactly as a module writes
//! one; each subtask changed gets one new segment; every segment of the original is linked,
//! every state file written again, as a checkpoint does ([`Store::derive`]). A value must fit the shape of the
//! values of that version the point holds ([`Shape`]); a row's `key_group` and `version`, if
//! given, must be this point's. Everything is checked before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use super::envelope::{self, Group};
use super::input::{Row, Rows, read_rows};
use super::json::key_to_json;
use super::shape::Shape;
use super::walk::{self, Met, Select};
use super::{StateError, msgpack::Value};
use crate::barrier::BarrierKind;
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId};
use crate::key_group::{key_group, subtask_of_key_group};
use crate::snapshot::Piece;
use crate::store::{Metadata, Origin, Point, StateLayout, Store, Written};

/// What `host state write` changes.
#[derive(Clone, Debug)]
pub struct Edit {
    /// The operator.
    pub operator: OperatorId,
    /// A file of rows to upsert.
    pub upserts: Option<PathBuf>,
    /// A file of keys to delete.
    pub deletions: Option<PathBuf>,
    /// The new savepoint's id.
    pub to: SavepointId,
}

/// What an edit wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Edited {
    /// The new savepoint's folder.
    pub dir: PathBuf,
    /// Keys upserted (written, for a bootstrap or a repartition).
    pub upserted: usize,
    /// Keys deleted.
    pub deleted: usize,
    /// Key groups changed.
    pub groups: usize,
    /// The state's format and the version written.
    pub format: (String, u32),
    /// Its files, new and shared.
    pub written: Written,
}

/// The keyed state of an operator as the first walk finds it.
struct Found {
    format: String,
    version: u32,
    /// The shape of the values of `version`.
    shape: Shape,
}

/// Writes the savepoint `edit.to`: `point` (`shown`, for people) with the edit applied.
pub fn write(store: &Store, point: &Point, shown: &str, edit: &Edit) -> Result<Edited, StateError> {
    walk::require_chains(point, shown)?;
    let op = walk::operator(point, shown, &edit.operator)?;
    let to = store.layout().savepoint(&edit.to);
    if store.has_point(&to)? {
        return Err(StateError::Exists(edit.to.clone()));
    }
    let upserts = rows(edit.upserts.as_deref(), Rows::Upserts)?;
    let deletions = rows(edit.deletions.as_deref(), Rows::Deletions)?;
    if upserts.is_empty() && deletions.is_empty() {
        let nothing = "nothing to write: pass --upsert FILE.jsonl or --delete FILE.jsonl with rows";
        return Err(StateError::Flag(nothing.to_owned()));
    }
    let found = survey(store, point, op)?;
    let max_parallelism = point.metadata.max_parallelism;
    let paths = (edit.upserts.as_deref(), edit.deletions.as_deref());
    let changes = changes(&upserts, &deletions, paths, max_parallelism, &found)?;
    let mut deriving = store.derive(Some(point), &to, derived(point, "state-write", store))?;
    // Every subtask's state file is written again, as a checkpoint writes it; only the
    // subtasks of `op` holding a changed group get new pieces.
    store.each_state(
        point,
        |_| true,
        |id, subtask, mut held| {
            let owned =
                |g: &u32| subtask_of_key_group(*g, max_parallelism, op.parallelism) == subtask;
            let changed = changes.iter().filter(|(g, _)| id == &op.id && owned(g));
            for (&group, change) in changed {
                let chain = held.key_groups.entry(group).or_default();
                let state = match chain.is_empty() {
                    true => Group::default(),
                    false => walk::resolve(id, subtask, group, chain)?,
                };
                let piece = change.piece(&found, &state, paths.1)?;
                chain.push(Piece::new(piece));
            }
            Ok::<_, StateError>(deriving.write(id, subtask, held)?)
        },
    )?;
    let (to, written) = deriving.publish()?;
    Ok(Edited {
        dir: to,
        upserted: upserts.len(),
        deleted: deletions.len(),
        groups: changes.len(),
        format: (found.format, found.version),
        written,
    })
}

fn rows(path: Option<&Path>, kind: Rows) -> Result<Vec<Row>, StateError> {
    path.map_or(Ok(Vec::new()), |path| read_rows(path, kind))
}

/// The format, newest version and shape of the keyed state of `op`: its one format, or a
/// refusal.
fn survey(
    store: &Store,
    point: &Point,
    op: &crate::store::OperatorState,
) -> Result<Found, StateError> {
    let mut formats: BTreeSet<String> = BTreeSet::new();
    let mut by_version: BTreeMap<u32, Shape> = BTreeMap::new();
    let select = Select {
        group: None,
        operator_state: false,
    };
    walk::walk(store, point, op, select, |met| {
        if let Met::Group { state, .. } = met {
            formats.insert(state.format);
            for (_, entry) in &state.entries {
                by_version
                    .entry(entry.version)
                    .or_insert(Shape::Unknown)
                    .learn(&entry.value);
            }
        }
        Ok(())
    })?;
    let problem = |problem: String| StateError::Formats {
        operator: op.id.clone(),
        problem,
    };
    let (format, newest) = match (formats.len(), by_version.pop_last()) {
        (1, Some(newest)) => (formats.pop_first().expect("one"), newest),
        (0, _) | (_, None) => {
            return Err(problem(
                "it holds no keyed state, so the format and version of new values are unknown: \
                 use `host state bootstrap` to start a job with state from data"
                    .to_owned(),
            ));
        }
        _ => {
            let names: Vec<String> = formats.iter().map(|f| format!("`{f}`")).collect();
            return Err(problem(format!(
                "its key groups hold state of formats {}: which one a new value is in is unknown",
                names.join(" and ")
            )));
        }
    };
    Ok(Found {
        format,
        version: newest.0,
        shape: newest.1,
    })
}

/// One key group's change.
#[derive(Default)]
struct Change<'r> {
    upserts: Vec<&'r Row>,
    deletions: Vec<&'r Row>,
}

impl Change<'_> {
    /// The piece that applies the change to the group's `state`: a delta, or the group's
    /// whole state if it held none. A key to delete must be in it.
    fn piece(
        &self,
        found: &Found,
        state: &Group,
        deletions: Option<&Path>,
    ) -> Result<Vec<u8>, StateError> {
        if let Some(row) = self
            .deletions
            .iter()
            .find(|row| !state.contains_key(&row.key))
        {
            return Err(StateError::Input {
                path: deletions.expect("a deletion comes from a file").to_owned(),
                line: row.line,
                problem: format!(
                    "key {} is not in the state: nothing to delete",
                    key_to_json(&row.key)
                ),
            });
        }
        let mut upserts: Vec<(&[u8], &Value)> = self
            .upserts
            .iter()
            .map(|row| {
                (
                    &row.key[..],
                    row.value.as_ref().expect("an upsert has a value"),
                )
            })
            .collect();
        upserts.sort_by_key(|(key, _)| *key);
        let (format, version) = (&found.format, found.version);
        if state.entries.is_empty() && state.format.is_empty() {
            return Ok(envelope::seal_whole(format, version, upserts.into_iter()));
        }
        let mut removed: Vec<Vec<u8>> = self.deletions.iter().map(|row| row.key.clone()).collect();
        removed.sort();
        Ok(envelope::seal_delta(
            format,
            version,
            upserts.into_iter(),
            &removed,
        ))
    }
}

/// The rows by key group, each checked against the point: its key group and version, if
/// given, and its value's shape.
fn changes<'r>(
    upserts: &'r [Row],
    deletions: &'r [Row],
    (upsert_path, deletion_path): (Option<&Path>, Option<&Path>),
    max_parallelism: u32,
    found: &Found,
) -> Result<BTreeMap<u32, Change<'r>>, StateError> {
    let mut changes: BTreeMap<u32, Change<'r>> = BTreeMap::new();
    let upserted: BTreeSet<&[u8]> = upserts.iter().map(|row| &row.key[..]).collect();
    for (rows, path) in [(upserts, upsert_path), (deletions, deletion_path)] {
        for row in rows {
            let path = path.expect("rows come from a file");
            let problem = |problem: String| StateError::Input {
                path: path.to_owned(),
                line: row.line,
                problem,
            };
            let group = key_group(&row.key, max_parallelism);
            check_row(row, group, max_parallelism, found).map_err(problem)?;
            let change = changes.entry(group).or_default();
            match row.value {
                Some(_) => change.upserts.push(row),
                None if upserted.contains(&row.key[..]) => {
                    return Err(problem(
                        "the key is upserted too: upsert it or delete it".to_owned(),
                    ));
                }
                None => change.deletions.push(row),
            }
        }
    }
    Ok(changes)
}

/// Whether `row`, whose key is in key group `group`, fits the state `found`.
fn check_row(row: &Row, group: u32, max_parallelism: u32, found: &Found) -> Result<(), String> {
    if let Some(said) = row.key_group.filter(|&said| said != group) {
        return Err(format!(
            "key {} is in key group {group} of this point's {max_parallelism}, the row says {said}: \
             a row read from a point of another job, or of another max_parallelism? (drop \
             `key_group`, or read this point's rows)",
            key_to_json(&row.key)
        ));
    }
    if let Some(said) = row.version.filter(|&said| said != found.version) {
        return Err(format!(
            "the row's value is of version {said}, but this point's state `{}` is written in \
             version {}",
            found.format, found.version
        ));
    }
    match &row.value {
        Some(value) if !found.shape.fits(value) => Err(format!(
            "the value of key {}, {}, does not fit state `{}` v{}: its values are {}",
            key_to_json(&row.key),
            super::json::to_json(value),
            found.format,
            found.version,
            found.shape.describe()
        )),
        _ => Ok(()),
    }
}

/// The metadata of a point derived from `point` by the tool `tool`: its own job (named after
/// the tool), numbered after the point (so that pieces it adds come after every piece of the
/// point, and a job resuming from it numbers its checkpoints after both), a savepoint, its
/// origin the point.
pub(super) fn derived(point: &Point, tool: &str, store: &Store) -> Metadata {
    let m = &point.metadata;
    let savepoint = point
        .dir
        .parent()
        .filter(|parent| *parent == store.layout().savepoints())
        .and_then(|_| point.dir.file_name()?.to_str()?.parse().ok());
    Metadata {
        job: JobId::generate_for(tool),
        checkpoint: CheckpointId(m.checkpoint.0 + 1),
        kind: BarrierKind::Savepoint,
        completed_unix_ms: now_unix_ms(),
        // Every state file is written again by this host's encoder.
        state_layout: StateLayout::Timed,
        resumed_from: Some(Origin {
            job: m.job.clone(),
            checkpoint: m.checkpoint,
            savepoint,
        }),
        ..m.clone()
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_unix_ms() -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    now.map_or(0, |d| d.as_millis() as u64)
}
