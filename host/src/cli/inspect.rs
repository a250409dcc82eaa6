//! `host inspect POINT`: a point's metadata, printed once every state file it names has been
//! read and its checksum verified; with `--json`, the same as one object.

use std::process::ExitCode;

use host::connectors::position::{self, Position};
use host::points::savepoint::{self, RestorePoint};
use host::store::metadata::DEFINITION_SINCE;
use host::store::{Metadata, OperatorState, Point, Store};

use super::progress;

/// `host inspect POINT`: resolves the point, verifies it, prints its metadata.
pub(super) fn inspect(store: &Store, point: &str, json: bool) -> anyhow::Result<ExitCode> {
    let point = RestorePoint::parse(point).map_err(anyhow::Error::msg)?;
    let dir = savepoint::resolve(store, &point)?;
    let loaded = store.read_point(&dir)?;
    let verifying = format!("verifying {}", dir.display());
    progress::spinning(&verifying, || store.verify_states(&loaded))?;
    let positions = connector_positions(store, &loaded)?;
    let shown = store.display(&dir);
    if json {
        let mut value = point_json(&shown, &loaded.metadata);
        value["connector_positions"] = serde_json::to_value(&positions)?;
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_point(&shown, &loaded.metadata);
        print_positions(&positions);
    }
    Ok(ExitCode::SUCCESS)
}

/// The position each connector subtask of `point` holds (its state files read again, they
/// are small: a sequence, transaction ids, the records of a checkpoint not yet committed).
fn connector_positions(store: &Store, point: &Point) -> anyhow::Result<Vec<Position>> {
    let mut connectors = Point {
        dir: point.dir.clone(),
        metadata: point.metadata.clone(),
    };
    connectors.metadata.operators.retain(position::is_connector);
    if connectors.metadata.operators.is_empty() {
        return Ok(Vec::new());
    }
    let states = store.read_states(&connectors)?;
    Ok(position::of_point(&connectors.metadata, &states))
}

/// Prints each connector subtask's position, if the point has connectors.
pub(super) fn print_positions(positions: &[Position]) {
    if !positions.is_empty() {
        println!("  connector positions:");
    }
    for p in positions {
        let position = match &p.position {
            Ok(text) => text.clone(),
            Err(error) => format!("unreadable: {error}"),
        };
        let position = super::terminal::escaped(&position);
        println!("    {}[{}]  {position}", p.operator, p.subtask);
    }
}

/// The point shown as `path`, as one JSON object.
fn point_json(path: &str, m: &Metadata) -> serde_json::Value {
    let operators: Vec<_> = m.operators.iter().map(operator_json).collect();
    serde_json::json!({
        "path": path, "job": m.job, "checkpoint": m.checkpoint.0, "kind": format!("{:?}", m.kind).to_lowercase(),
        "completed_unix_ms": m.completed_unix_ms, "operators": operators,
        "resumed_from": m.resumed_from, "runs_without_job_file": m.definition.is_some(),
    })
}

/// One operator of a point, with its state files, as a JSON object.
fn operator_json(op: &OperatorState) -> serde_json::Value {
    serde_json::json!({
        "id": op.id, "module_sha256": op.module_sha256, "module_name": op.module_name,
        "module_version": op.module_version, "parallelism": op.parallelism,
        "files": op.files.iter().map(|f| serde_json::json!({
            "subtask": f.subtask, "file": f.file, "len": f.len, "checksum_xxh3_128": hex::encode(f.checksum),
        })).collect::<Vec<_>>(),
    })
}

/// The point shown as `path`, for a person: where it came from, then each operator's module
/// and state files.
fn print_point(path: &str, m: &Metadata) {
    println!(
        "{path}  ({:?} {} of job {}, all checksums verified)",
        m.kind, m.checkpoint, m.job
    );
    if let Some(origin) = &m.resumed_from {
        let savepoint = origin.savepoint.as_ref().map(|id| format!(" ({id})"));
        let savepoint = savepoint.unwrap_or_default();
        println!(
            "  resumed from {}:{}{savepoint}",
            origin.job, origin.checkpoint
        );
    }
    match &m.definition {
        Some(_) => println!("  job definition recorded: `host run --from` needs no job file"),
        None => {
            println!(
                "  no job definition recorded (before format {DEFINITION_SINCE}): run it with its \
                 job file"
            )
        }
    }
    for op in &m.operators {
        let module = match position::is_connector(op) {
            true => "connector built into the host".to_owned(),
            false => format!("sha256:{}", op.module_sha256),
        };
        println!(
            "  {}  {} {}  {module}  parallelism {}",
            op.id, op.module_name, op.module_version, op.parallelism
        );
        for f in &op.files {
            println!(
                "    {}  {} bytes  xxh3-128:{}",
                f.file,
                f.len,
                hex::encode(f.checksum)
            );
        }
    }
}
