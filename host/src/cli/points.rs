//! `host rm`, `host gc`, `host export` and `host savepoints --tree`: the points of the state
//! folder, the modules they name, and where each came from.

use std::path::Path;
use std::process::ExitCode;

use host::ids::{JobId, SavepointId};
use host::points::gc;
use host::points::lineage::{self, PointFacts};
use host::points::savepoint::{self, RestorePoint};
use host::store::{Store, StoreError};

/// `host rm POINT`: deletes a savepoint, or a retained checkpoint (`JOB_ID:N`) of a job that no
/// longer runs, then collects the modules nothing refers to any more.
pub(super) fn rm(store: &Store, point: &str) -> anyhow::Result<ExitCode> {
    let dir = match point.split_once(':') {
        Some(_) => remove_checkpoint(store, point)?,
        None => remove_savepoint(store, point)?,
    };
    println!("removed {point} ({})", store.display(&dir));
    match gc::collect(store, false) {
        Ok(collected) => print_collected(&collected, false),
        Err(e) => eprintln!("warning: modules were not collected: {e}"),
    }
    Ok(ExitCode::SUCCESS)
}

fn remove_savepoint(store: &Store, point: &str) -> anyhow::Result<std::path::PathBuf> {
    let id: SavepointId = point.parse().map_err(|e: String| {
        anyhow::anyhow!("`{point}`: {e} (`host rm` takes a savepoint id or JOB_ID:N)")
    })?;
    store.remove_savepoint(&id).map_err(|e| match e {
        StoreError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("no savepoint `{id}` (see `host savepoints`)")
        }
        e => e.into(),
    })
}

fn remove_checkpoint(store: &Store, point: &str) -> anyhow::Result<std::path::PathBuf> {
    let RestorePoint::JobCheckpoint(job, n) =
        RestorePoint::parse(point).map_err(anyhow::Error::msg)?
    else {
        anyhow::bail!("`{point}`: `host rm` takes a savepoint id or JOB_ID:N");
    };
    let dir = store.layout().checkpoint(&job, n);
    anyhow::ensure!(
        store.has_point(&dir)?,
        "job `{job}` has no retained checkpoint {n} (see `host savepoints --job {job}`)"
    );
    anyhow::ensure!(
        !store.is_running(&job)?,
        "job `{job}` is running: its retained checkpoints are what it recovers from; stop it first"
    );
    if let Some(holder) = store.runs_elsewhere(&job)? {
        anyhow::bail!(
            "job `{job}` runs elsewhere, as its lease on the object store says (held by \
             {holder}): its retained checkpoints are what it recovers from; stop it first (if \
             its process is gone, `host run --from {job}` takes it over)"
        );
    }
    store.remove_checkpoints(&job, &[n])?;
    Ok(dir)
}

/// `host gc [--dry-run]`.
pub(super) fn gc(store: &Store, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let collected = gc::collect(store, dry_run)?;
    if json {
        let value = serde_json::json!({
            "dry_run": dry_run, "removed": collected.removed, "kept": collected.kept,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print_collected(&collected, dry_run);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_collected(collected: &gc::Collected, dry_run: bool) {
    let (verb, summary) = match dry_run {
        true => ("would remove", "to remove"),
        false => ("removed", "removed"),
    };
    for sha in &collected.removed {
        println!("{verb} module {sha}");
    }
    println!(
        "{} module(s) {summary}, {} kept (referenced by a point or a running job)",
        collected.removed.len(),
        collected.kept
    );
}

/// `host export POINT DIR`.
pub(super) fn export(store: &Store, point: &str, to: &Path) -> anyhow::Result<ExitCode> {
    let parsed = RestorePoint::parse(point).map_err(anyhow::Error::msg)?;
    let dir = savepoint::resolve(store, &parsed)?;
    let shown = store.display(&dir);
    let exported = super::progress::spinning(&format!("exporting {shown}"), || {
        host::points::export::export(store, &dir, &shown, to)
    })?;
    println!("{}", to.display());
    println!(
        "exported {shown}: {} file(s), {} module(s), {} bytes; resume it with: host run --from {}",
        exported.files,
        exported.modules.len(),
        exported.bytes,
        to.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `host savepoints --tree`: which point came from which job and program.
pub(super) fn tree(store: &Store, job: Option<&JobId>, json: bool) -> anyhow::Result<ExitCode> {
    let mut facts = Vec::new();
    for listed in savepoint::list(store, job)? {
        match &listed.metadata {
            Ok(m) => {
                let name = match &listed.savepoint {
                    Some(id) => id.to_string(),
                    None => format!("{}:{}", m.job, m.checkpoint),
                };
                facts.push(PointFacts::of(name, listed.savepoint.is_some(), m));
            }
            Err(e) => eprintln!("warning: {} left out: {e}", store.display(&listed.dir)),
        }
    }
    let roots = lineage::tree(facts);
    if json {
        println!("{}", serde_json::to_string_pretty(&roots)?);
    } else {
        print!("{}", lineage::render(&roots));
    }
    Ok(ExitCode::SUCCESS)
}
