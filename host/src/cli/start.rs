//! `host run` and `host check`: from a job file, and a point to resume from, to a running job
//! or to the verdict of a dry run.
//!
//! Both read and verify everything first ([`prepare`]): the job file, the point, every state
//! file against the job. Both then build the job: every module compiled, every subtask
//! instantiated and its state restored, which touches nothing outside the guests. `check`
//! builds with every mount read-only and the compiled-module cache read-only, reports what
//! `run` would do, and ends: it changes no file. Both refuse a job whose mounts reach the
//! host's own folders ([`host::protected`]). `run` then admits the job under the state
//! folder's start lock (no running job writes a folder it would write, nor runs the job the
//! point came from), records and claims it, and spawns it; its sinks reconcile their folders
//! with the point (`recover`) as the job's first step.
//!
//! One module a step: [`prepare`] (the job and the point, read and verified), [`dry_run`]
//! (`check`), [`admit`] (under the start lock) and [`run`] (the job in the foreground); the
//! build both share is here ([`build`]).

mod admit;
mod dry_run;
mod prepare;
mod run;

use std::sync::Arc;

use host::engine::{CacheMode, Engine, Limits};
use host::ids::JobId;
use host::runtime::remote::Remote;
use host::runtime::{self, BuildError, JobSpec};
use host::store::Store;
use host::topology::Plan;

pub(super) use dry_run::check_job;
use prepare::Prepared;
pub(super) use prepare::prepare;
pub(super) use run::run_job;

/// Builds the job: compiles, instantiates, initializes and restores every subtask. Touches
/// nothing outside the guests (and, as `cache_mode` says, the compiled-module cache).
async fn build(
    store: &Store,
    engine: Arc<Engine>,
    prepared: &mut Prepared,
    (plan, job): (Plan, JobId),
    remote: Option<Arc<dyn Remote>>,
) -> Result<runtime::Job, Vec<BuildError>> {
    let spec = JobSpec {
        job,
        plan,
        record: prepared.record(),
        taking_over: prepared.takes_over(store),
        restore: prepared.restore.take(),
        limits: Limits::default(),
        protected: prepared.protected(store),
        secrets: prepared.secrets.clone(),
        remote,
        bound: None,
    };
    runtime::build(engine, store.clone(), spec).await
}

pub(super) fn engine(store: &Store, cache_mode: CacheMode) -> anyhow::Result<Arc<Engine>> {
    let layout = store.layout();
    let engine = Engine::new(&layout.cache(), &layout.cache_key(), cache_mode);
    Ok(Arc::new(engine.map_err(|e| anyhow::anyhow!("{e:#}"))?))
}
