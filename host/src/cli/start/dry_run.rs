//! `host check`: the dry run of a prepared job, reporting each operator's fate.

use std::collections::BTreeMap;
use std::process::ExitCode;

use host::admission;
use host::engine::CacheMode;
use host::ids::{JobId, OperatorId};
use host::runtime::{self, BuildError};
use host::store::{Metadata, Store};
use host::topology::Plan;

use super::admit::refusals;
use super::prepare::Prepared;
use super::{build, engine};
use crate::cli::check;

/// The dry run: would `run` start this job from this point? Builds it with every mount
/// read-only (and without those refused, reported once), never runs it, never reconciles a
/// sink, writes no file. Reports each operator's fate ([`check::verdicts`]), as JSON with
/// `json`.
pub(in crate::cli) async fn check_job(
    store: Store,
    mut prepared: Prepared,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let writable = admission::writable_mounts(&prepared.plan);
    let mut problems = refusals(&store, &prepared, &writable)?;
    let restore = prepared
        .restore
        .as_ref()
        .expect("`check` always has a point");
    let metadata = restore.metadata.clone();
    let timers = check::pending_timers(metadata.max_parallelism, &restore.states);
    let plan = read_only_plan(&store, &prepared);
    let positions = prepared.restore.as_ref().map_or(Vec::new(), |r| {
        host::connectors::position::of_point(&r.metadata, &r.states)
    });
    let engine = engine(&store, CacheMode::ReadOnly)?;
    let built = build(
        &store,
        engine,
        &mut prepared,
        (plan, JobId::generate()),
        None,
    )
    .await;
    let errors = built.as_ref().err().map_or(&[][..], Vec::as_slice);
    let verdicts = verdicts(&prepared, &metadata, &built, &timers);
    problems.extend(errors.iter().map(ToString::to_string));
    let point = prepared
        .point
        .as_ref()
        .map(|(_, shown)| shown.clone())
        .unwrap_or_default();
    let would_start = problems.is_empty();
    if json {
        let report = serde_json::json!({
            "would_start": would_start, "point": point, "problems": problems, "operators": verdicts,
            "connector_positions": positions,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(if would_start {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if let (true, Ok(job)) = (would_start, &built) {
        println!("ok: the job would resume from {point}");
        check::print(&verdicts, &point);
        crate::cli::inspect::print_positions(&positions);
        job.operators().iter().for_each(print_remap);
        return Ok(ExitCode::SUCCESS);
    }
    check::print(&verdicts, &point);
    crate::cli::inspect::print_positions(&positions);
    Err(prepared.refusal(&problems))
}

/// Each operator's fate ([`check::verdicts`]), named as before any rename, with the timers the
/// point holds pending for it.
fn verdicts(
    prepared: &Prepared,
    metadata: &Metadata,
    built: &Result<runtime::Job, Vec<BuildError>>,
    timers: &BTreeMap<OperatorId, check::Pending>,
) -> Vec<check::Verdict> {
    let errors = built.as_ref().err().map_or(&[][..], Vec::as_slice);
    let operators = built.as_ref().ok().map(runtime::Job::operators);
    let modules = check::module_hashes(&prepared.plan);
    let mut verdicts = check::verdicts(metadata, &prepared.plan, &modules, operators, errors);
    for verdict in &mut verdicts {
        let renames = &prepared.asked.mapping.renames;
        let renamed = renames.iter().find(|(_, new)| *new == verdict.operator);
        verdict.renamed_from = renamed.map(|(old, _)| old.clone());
        // The point's states are under the operators' new ids already.
        verdict.timers = timers.get(&verdict.operator).copied();
    }
    verdicts
}

/// The job's plan for the dry run: every mount read-only, and those the host refuses
/// ([`Prepared::protected`]) left out.
fn read_only_plan(store: &Store, prepared: &Prepared) -> Plan {
    let protected = prepared.protected(store);
    let mut plan = prepared.plan.clone();
    for op in &mut plan.operators {
        let id = op.id.clone();
        op.mounts
            .retain(|mount| protected.check(&id, mount).is_ok());
        op.mounts
            .iter_mut()
            .for_each(|mount| mount.writable = false);
    }
    plan
}

/// Prints how an operator's state moves to a new parallelism, subtask by subtask.
fn print_remap(op: &runtime::OperatorInfo) {
    let Some(remap) = op
        .remap
        .as_ref()
        .filter(|r| r.from_parallelism != op.parallelism)
    else {
        return;
    };
    println!(
        "  {}: parallelism {} -> {}",
        op.id, remap.from_parallelism, op.parallelism
    );
    for (subtask, moved) in remap.subtasks.iter().enumerate() {
        let from: Vec<String> = moved
            .iter()
            .map(|(old, (groups, bytes))| format!("{old} ({groups} key groups, {bytes} bytes)"))
            .collect();
        let from = if from.is_empty() {
            "no keyed state".to_owned()
        } else {
            from.join(", ")
        };
        println!("    subtask {subtask} <- {from}");
    }
}
