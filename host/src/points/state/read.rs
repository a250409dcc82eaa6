//! `host state read`: every key and value of an operator's keyed state, and its operator
//! state, as JSON lines or Parquet.
//!
//! Two walks over the point: the first checks every blob (a state not in the envelope is
//! refused before a row is written) and learns the values' shape, which gives the Parquet
//! columns; the second writes the rows, key group by key group, keys in byte order within a
//! group. One subtask's state is in memory at a time, and one Parquet row group.

use std::collections::BTreeSet;
use std::io::Write;

use serde_json::{Value as Json, json};

use super::json::{key_to_json, to_json};
use super::parquet::ParquetRows;
use super::shape::Shape;
use super::walk::{self, Met, Select};
use super::{StateError, msgpack::Value};
use crate::ids::OperatorId;
use crate::key_group::key_group;
use crate::store::{Point, Store};

/// What the rows are written as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object a line.
    Jsonl,
    /// A Parquet file.
    Parquet,
}

/// What `host state read` reads.
#[derive(Clone, Debug)]
pub struct ReadRequest {
    /// The operator.
    pub operator: OperatorId,
    /// Only this key.
    pub key: Option<Vec<u8>>,
    /// Only this key group.
    pub key_group: Option<u32>,
    /// The rows' format.
    pub format: Format,
}

/// What a read found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Keys written.
    pub keys: u64,
    /// Key groups holding them.
    pub groups: u64,
    /// Operator states written (one per subtask that has one).
    pub operator_states: u64,
    /// The keyed state's formats and versions.
    pub formats: BTreeSet<(String, u32)>,
}

/// What the first walk learns.
struct Survey {
    summary: ReadSummary,
    shape: Shape,
    keys_utf8: bool,
    operator_states: Vec<Json>,
}

/// Reads the state of `request.operator` in `point` (`shown`, for people) into `out`.
pub fn read<W: Write + Send>(
    store: &Store,
    point: &Point,
    shown: &str,
    request: &ReadRequest,
    out: W,
) -> Result<ReadSummary, StateError> {
    let op = walk::operator(point, shown, &request.operator)?;
    let select = selection(point, request)?;
    let survey = survey(store, point, op, select, request)?;
    let only_key = |key: &[u8]| request.key.as_deref().is_none_or(|k| k == key);
    match request.format {
        Format::Jsonl => {
            let mut out = std::io::BufWriter::new(out);
            for row in &survey.operator_states {
                line(&mut out, row)?;
            }
            walk::walk(store, point, op, select, |met| {
                let Met::Group { group, state } = met else {
                    return Ok(());
                };
                for (key, entry) in state.entries.iter().filter(|(k, _)| only_key(k)) {
                    let row = KeyedRow {
                        key_group: group,
                        key: key_to_json(key),
                        version: entry.version,
                        value: to_json(&entry.value),
                    };
                    line(&mut out, &row)?;
                }
                Ok(())
            })?;
            out.flush().map_err(output_error)?;
        }
        Format::Parquet => {
            let metadata = parquet_metadata(op.id.as_str(), &survey);
            let mut rows = ParquetRows::new(out, &survey.shape, survey.keys_utf8, metadata)?;
            walk::walk(store, point, op, select, |met| {
                if let Met::Group { group, state } = met {
                    for (key, entry) in state.entries.iter().filter(|(k, _)| only_key(k)) {
                        rows.push(group, key, entry.version, &entry.value)?;
                    }
                }
                Ok(())
            })?;
            rows.finish()?;
        }
    }
    Ok(survey.summary)
}

/// What to walk for `request`: the group of its key, or its group; operator state only when
/// neither is asked for.
fn selection(point: &Point, request: &ReadRequest) -> Result<Select, StateError> {
    let max_parallelism = point.metadata.max_parallelism;
    if let Some(group) = request.key_group.filter(|&g| g >= max_parallelism) {
        return Err(StateError::Flag(format!(
            "--key-group {group}: the point has key groups 0 to {} (max_parallelism {max_parallelism})",
            max_parallelism - 1
        )));
    }
    let of_key = request
        .key
        .as_deref()
        .map(|key| key_group(key, max_parallelism));
    if let (Some(of_key), Some(group)) = (of_key, request.key_group)
        && of_key != group
    {
        return Err(StateError::Flag(format!(
            "--key is in key group {of_key}, not in --key-group {group}"
        )));
    }
    let group = of_key.or(request.key_group);
    Ok(Select {
        group,
        operator_state: group.is_none(),
    })
}

/// The first walk: every blob checked, the values' shape learnt, the rows counted.
fn survey(
    store: &Store,
    point: &Point,
    op: &crate::store::OperatorState,
    select: Select,
    request: &ReadRequest,
) -> Result<Survey, StateError> {
    let mut survey = Survey {
        summary: ReadSummary::default(),
        shape: Shape::Unknown,
        keys_utf8: true,
        operator_states: Vec::new(),
    };
    walk::walk(store, point, op, select, |met| {
        match met {
            Met::OperatorState { subtask, opened } => {
                survey.summary.operator_states += 1;
                survey.operator_states.push(json!({
                    "subtask": subtask,
                    "operator_state": {
                        "format": opened.format, "version": opened.version,
                        "value": to_json(&opened.payload),
                    },
                }));
            }
            Met::Group { state, .. } => {
                let only = |k: &Vec<u8>| request.key.as_ref().is_none_or(|key| key == k);
                let mut any = false;
                for (key, entry) in state.entries.iter().filter(|(k, _)| only(k)) {
                    any = true;
                    survey.summary.keys += 1;
                    survey.keys_utf8 &= std::str::from_utf8(key).is_ok();
                    survey.shape.learn(&entry.value);
                    let format = (state.format.clone(), entry.version);
                    if !survey.summary.formats.contains(&format) {
                        survey.summary.formats.insert(format);
                    }
                }
                survey.summary.groups += u64::from(any);
            }
        }
        Ok(())
    })?;
    Ok(survey)
}

/// The Parquet file's key-value metadata: the operator, the state's formats, and its
/// operator states (JSON), which are not rows of the keyed table.
fn parquet_metadata(operator: &str, survey: &Survey) -> Vec<(String, String)> {
    let formats: Vec<Json> = survey
        .summary
        .formats
        .iter()
        .map(|(format, version)| json!({"format": format, "version": version}))
        .collect();
    vec![
        ("jobhost.operator".to_owned(), operator.to_owned()),
        (
            "jobhost.formats".to_owned(),
            Json::Array(formats).to_string(),
        ),
        (
            "jobhost.operator_states".to_owned(),
            Json::Array(survey.operator_states.clone()).to_string(),
        ),
    ]
}

/// A row of keyed state, its fields in this order.
#[derive(serde::Serialize)]
struct KeyedRow {
    key_group: u32,
    key: Json,
    version: u32,
    value: Json,
}

fn line(out: &mut impl Write, row: &impl serde::Serialize) -> Result<(), StateError> {
    serde_json::to_writer(&mut *out, row).map_err(|e| output_error(e.into()))?;
    out.write_all(b"\n").map_err(output_error)
}

fn output_error(source: std::io::Error) -> StateError {
    StateError::Io {
        path: "the output".into(),
        source,
    }
}

/// A value's JSON text, for a Parquet column of JSON.
pub(super) fn json_text(value: &Value) -> String {
    to_json(value).to_string()
}
