//! The admission of a built job, under the state folder's start lock: refused if it conflicts
//! with a running job or its mounts reach the host's own folders; else the point's job taken
//! over (on an object store), its modules kept, and the job recorded and claimed.

use std::path::PathBuf;

use anyhow::Context as _;

use host::admission::{self, Conflict};
use host::ids::{CheckpointId, JobId};
use host::runtime;
use host::store::{JobLock, JobState, JobStatus, Store};
use host::topology::Plan;

use super::prepare::{Prepared, resolve};

/// Why the job may not start: its mounts that reach the host's own folders, then its
/// conflicts with the jobs running now. Reads only.
pub(super) fn refusals(
    store: &Store,
    prepared: &Prepared,
    writable: &[PathBuf],
) -> anyhow::Result<Vec<String>> {
    let protected = prepared.protected(store);
    let mounts = protected.refusals(&prepared.plan);
    let running = admission::running_jobs(store)?;
    let conflicts = admission::conflicts(prepared.point_job(), writable, &running);
    let mounts = mounts.iter().map(ToString::to_string);
    Ok(mounts
        .chain(conflicts.iter().map(Conflict::to_string))
        .collect())
}

/// Refuses the job if anything in [`refusals`] says it may not start.
pub(super) fn refuse(
    store: &Store,
    prepared: &Prepared,
    writable: &[PathBuf],
) -> anyhow::Result<()> {
    let problems = refusals(store, prepared, writable)?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(prepared.refusal(&problems))
}

/// A built job, as [`admit`] needs it.
pub(super) struct Admitting<'a> {
    pub(super) job: JobId,
    pub(super) writable_mounts: Vec<PathBuf>,
    /// Its operators, with the hash of the module each loaded.
    pub(super) modules: &'a [runtime::OperatorInfo],
    /// The number its first checkpoint takes (its lease starts at that epoch's generation).
    pub(super) first: CheckpointId,
    /// The last attempt: refuse rather than prepare again.
    pub(super) last: bool,
}

/// Under the start lock: refuses the job if it conflicts with one running now, else takes
/// over the point's job on an object store (`None` if the point moved meanwhile: prepare
/// again, or, when `last`, refuse), puts its modules into the module store, records the job
/// (with its modules, which `host gc` then keeps), claims it as running in this process, and
/// sweeps checkpoints in progress that jobs no longer running left behind.
pub(super) fn admit(
    store: &Store,
    prepared: &Prepared,
    admitting: Admitting<'_>,
) -> anyhow::Result<Option<(JobStatus, JobLock)>> {
    let Admitting {
        job,
        writable_mounts,
        modules,
        first,
        last,
    } = admitting;
    let starting = store.lock_starts()?;
    refuse(store, prepared, &writable_mounts)?;
    if let Some(moved) = take_over_point_job(store, prepared)? {
        anyhow::ensure!(!last, "{moved}");
        tracing::info!("{moved}: preparing the job again");
        return Ok(None);
    }
    let modules = store_modules(store, &prepared.plan, modules)?;
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let status = JobStatus {
        job: job.clone(),
        name: prepared.plan.name.clone(),
        started_unix_ms,
        resumed_from: prepared.from.as_ref().map(|(from, _)| from.clone()),
        writable_mounts,
        modules,
        state: JobState::Running {
            pid: std::process::id(),
        },
    };
    store.create_job(&status, &prepared.text, first)?;
    let claim = store.claim_job(&job)?;
    for dir in store.sweep_abandoned(&starting)? {
        tracing::info!(
            "removed {}: a checkpoint in progress of a job that no longer runs",
            dir.display()
        );
    }
    Ok(Some((status, claim)))
}

/// Puts the module of every operator of `plan` into the module store, each the very bytes the
/// engine loaded (`loaded` names their hashes; a file changed since is refused). Returns their
/// hashes, sorted and each once.
fn store_modules(
    store: &Store,
    plan: &Plan,
    loaded: &[runtime::OperatorInfo],
) -> anyhow::Result<Vec<String>> {
    let mut hashes = Vec::new();
    for (op, info) in plan.operators.iter().zip(loaded) {
        // A connector has no module to keep.
        let Some(path) = op.module() else { continue };
        if hashes.contains(&info.module_sha256) {
            continue;
        }
        let bytes = std::fs::read(path)
            .with_context(|| format!("operator `{}`: cannot read {}", op.id, path.display()))?;
        anyhow::ensure!(
            host::engine::sha256_hex(&bytes) == info.module_sha256,
            "operator `{}`: {} changed while the job started; start it again",
            op.id,
            path.display()
        );
        let location = store.display(&store.module_location(&info.module_sha256));
        store
            .put_module(&info.module_sha256, &bytes)
            .with_context(|| format!("operator `{}`: cannot keep its module", op.id))?;
        tracing::debug!(operator = %op.id, "module kept as {location}");
        hashes.push(info.module_sha256.clone());
    }
    hashes.sort();
    Ok(hashes)
}

/// On an object store, once the job is admitted: takes over the job that wrote the point, so
/// that its process, wherever it runs, can no longer publish or commit
/// ([`host::store::fence`]); a refused run takes nothing over. Returns why the point moved,
/// if `--from` now resolves to a newer point than before the takeover (`--from JOB_ID` while
/// that job still ran): resuming behind output already committed would repeat it.
fn take_over_point_job(store: &Store, prepared: &Prepared) -> anyhow::Result<Option<String>> {
    let (Some((dir, job)), Some((point, shown))) = (&prepared.from, &prepared.point) else {
        return Ok(None);
    };
    if !prepared.takes_over(store) {
        return Ok(None);
    }
    store
        .take_over(job)
        .with_context(|| format!("cannot take over job `{job}` on the object store"))?;
    let now = resolve(store, point)?;
    Ok((&now != dir).then(|| {
        let now = store.display(&now);
        format!("job `{job}` published {now} after {shown} was chosen, before it was taken over")
    }))
}
