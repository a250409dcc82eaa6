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

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use super::check;

use host::admission::{self, Conflict};
use host::barrier::BarrierKind;
use host::connectors::secret::{self, Secrets};
use host::control;
use host::engine::{CacheMode, Engine, Limits};
use host::ids::{CheckpointId, JobId};
use host::points::savepoint::{self, Mapping, RestorePoint};
use host::protected::Protected;
use host::runtime::remote::Remote;
use host::runtime::{self, BuildError, JobRecord, JobSpec, Outcome, RestoreFrom};
use host::store::{JobLock, JobState, JobStatus, Origin, Store};
use host::topology::Plan;

/// Everything a job needs, read and verified before anything is instantiated.
pub(super) struct Prepared {
    /// The job file, or `None`: the program that wrote the point.
    job_file: Option<PathBuf>,
    text: String,
    /// The folder the job file's relative paths resolve against.
    base: PathBuf,
    plan: Plan,
    /// Modules fetched from an object store for a program without a job file.
    _fetched: Option<tempfile::TempDir>,
    /// The point's folder, and the job that took it.
    from: Option<(PathBuf, JobId)>,
    /// The point as `--from` named it, and as a person should read its location (its
    /// `s3://…` URL on an object store).
    point: Option<(RestorePoint, String)>,
    /// The point's state, until the job is built from it.
    restore: Option<RestoreFrom>,
    /// The secrets of its connectors, read from the environment or their files.
    secrets: Secrets,
    /// What `prepare` was asked, to prepare the job again.
    asked: Asked,
}

/// The arguments of [`prepare`] besides the store and the job file.
#[derive(Clone)]
struct Asked {
    from: Option<String>,
    mapping: Mapping,
    checkpoint_interval: Option<u64>,
}

impl Prepared {
    /// The job that took the point this job resumes from.
    fn point_job(&self) -> Option<&JobId> {
        self.from.as_ref().map(|(_, job)| job)
    }

    /// Whether running this job takes over the point's job: a point other machines may share
    /// ([`take_over_point_job`]).
    fn takes_over(&self, store: &Store) -> bool {
        self.from
            .as_ref()
            .is_some_and(|(dir, _)| store.resuming_takes_over(dir))
    }

    /// Refuses a point's recorded program that grants folders, unless the point was written
    /// here by this user or `trusted` ([`super::grants`]); a job file's own grants are its own.
    pub(super) fn check_grants(&self, store: &Store, trusted: bool) -> anyhow::Result<()> {
        let (None, Some((dir, _)), Some((_, shown))) = (&self.job_file, &self.from, &self.point)
        else {
            return Ok(());
        };
        super::grants::check(store, dir, shown, &self.plan, trusted)?;
        Ok(())
    }

    /// The job as a shadow run takes it ([`host::shadow`]), named by its job file.
    pub(super) fn into_shadow_side(mut self, store: &Store) -> host::shadow::Side {
        let name = match &self.job_file {
            Some(file) => file.display().to_string(),
            None => "the program that wrote the point".to_owned(),
        };
        host::shadow::Side {
            name,
            record: self.record(),
            restore: self.restore.take().expect("prepared from a point"),
            protected: self.protected(store),
            secrets: self.secrets.clone(),
            plan: self.plan,
        }
    }

    /// The same job prepared again, `--from` resolved anew.
    fn again(&self, store: &Store) -> anyhow::Result<Prepared> {
        let Asked {
            from,
            mapping,
            checkpoint_interval,
        } = self.asked.clone();
        let from = from.as_deref();
        let job_file = self.job_file.as_deref();
        prepare(store, job_file, from, &mapping, checkpoint_interval)
    }

    /// The refusal of this job, listing every problem.
    fn refusal(&self, problems: &[String]) -> anyhow::Error {
        let job = match &self.job_file {
            Some(file) => file.display().to_string(),
            None => "the program that wrote the point".to_owned(),
        };
        let what = match &self.point {
            Some((_, shown)) => format!("cannot start {job} from {shown}"),
            None => format!("cannot start {job}"),
        };
        anyhow::anyhow!("{what}:\n  - {}", problems.join("\n  - "))
    }

    /// The folders none of the job's mounts may reach: the state folder, its compiled-module
    /// cache, the job file's folder and its module files.
    fn protected(&self, store: &Store) -> Protected {
        let layout = store.layout();
        let modules = self.plan.operators.iter().filter_map(|op| op.module());
        Protected::new(layout.root(), &layout.cache(), Some(&self.base)).with_modules(modules)
    }

    /// What every point of the job records of its definition and lineage.
    fn record(&self) -> JobRecord {
        let origin = self.restore.as_ref().map(|restore| {
            let m = &restore.metadata;
            let dir = self.from.as_ref().map(|(dir, _)| dir);
            let name = dir.and_then(|dir| dir.file_name()?.to_str());
            Origin {
                job: m.job.clone(),
                checkpoint: m.checkpoint,
                savepoint: name
                    .filter(|name| m.kind == BarrierKind::Savepoint && name.starts_with("sp-"))
                    .and_then(|name| name.parse().ok()),
            }
        });
        JobRecord::new(self.text.clone(), &self.base, origin)
    }
}

/// The job file's text, the folder its relative paths resolve against, and its plan.
fn read_job_file(job_file: &Path) -> anyhow::Result<(String, PathBuf, Plan)> {
    let text = std::fs::read_to_string(job_file)
        .with_context(|| format!("cannot read job file {}", job_file.display()))?;
    let base = match job_file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let plan = Plan::from_toml(&text, &base).with_context(|| format!("{}", job_file.display()))?;
    Ok((text, base, plan))
}

/// Reads the job file (without one, the program that wrote the point `from`: its recorded
/// definition and its modules from the module store, each verified) and, with `from`, resolves
/// the point and verifies it against the job. Reads only.
pub(super) fn prepare(
    store: &Store,
    job_file: Option<&Path>,
    from: Option<&str>,
    mapping: &Mapping,
    checkpoint_interval: Option<u64>,
) -> anyhow::Result<Prepared> {
    let (text, base, mut plan, fetched) = match (job_file, from) {
        (Some(job_file), _) => {
            let (text, base, plan) = read_job_file(job_file)?;
            (text, base, plan, None)
        }
        (None, Some(from)) => {
            let point = RestorePoint::parse(from).map_err(anyhow::Error::msg)?;
            let dir = resolve(store, &point)?;
            let program = host::points::program::of_point(store, &dir, &store.display(&dir))?;
            (program.text, program.base, program.plan, program.fetched)
        }
        (None, None) => anyhow::bail!(
            "nothing to run: give a job file, or --from POINT to run the program that wrote POINT"
        ),
    };
    if let Some(ms) = checkpoint_interval {
        plan.checkpoint_interval_ms = ms;
    }
    let secrets = secret::resolve(&plan, |name| std::env::var(name).ok()).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "cannot read a connector's secret:\n  - {}",
            errors.join("\n  - ")
        )
    })?;
    let from_text = from;
    let (from, point, restore) = match from {
        None => (None, None, None),
        Some(from) => {
            let point = RestorePoint::parse(from).map_err(anyhow::Error::msg)?;
            let dir = resolve(store, &point)?;
            let reading = format!("reading and verifying {}", store.display(&dir));
            let started_at = std::time::Instant::now();
            let (metadata, states) = super::progress::spinning(&reading, || {
                savepoint::load_for(store, &dir, &plan, mapping)
            })?;
            tracing::debug!(elapsed = ?started_at.elapsed(), "point read and verified");
            let shown = store.display(&dir);
            let location = store.layout().relative(&dir).unwrap_or_else(|| dir.clone());
            let from = (dir, metadata.job.clone());
            let restore = RestoreFrom {
                metadata,
                states,
                point: Some(runtime::PointRef {
                    location,
                    renames: mapping.renames.clone(),
                    allow_non_restored: mapping.allow_non_restored,
                }),
            };
            (Some(from), Some((point, shown)), Some(restore))
        }
    };
    Ok(Prepared {
        job_file: job_file.map(Path::to_owned),
        text,
        base,
        plan,
        _fetched: fetched,
        from,
        point,
        restore,
        secrets,
        asked: Asked {
            from: from_text.map(str::to_owned),
            mapping: mapping.clone(),
            checkpoint_interval,
        },
    })
}

/// The folder (or object-store location) of `point`, absolute.
fn resolve(store: &Store, point: &RestorePoint) -> anyhow::Result<PathBuf> {
    let dir = savepoint::resolve(store, point)?;
    Ok(std::path::absolute(&dir).unwrap_or(dir))
}

/// Why the job may not start: its mounts that reach the host's own folders, then its
/// conflicts with the jobs running now. Reads only.
fn refusals(
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

/// The dry run: would `run` start this job from this point? Builds it with every mount
/// read-only (and without those refused, reported once), never runs it, never reconciles a
/// sink, writes no file. Reports each operator's fate ([`check::verdicts`]), as JSON with
/// `json`.
pub(super) async fn check_job(
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
    let protected = prepared.protected(&store);
    let mut plan = prepared.plan.clone();
    for op in &mut plan.operators {
        let id = op.id.clone();
        op.mounts
            .retain(|mount| protected.check(&id, mount).is_ok());
        op.mounts
            .iter_mut()
            .for_each(|mount| mount.writable = false);
    }
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
    let (operators, errors) = match &built {
        Ok(job) => (Some(job.operators()), &[][..]),
        Err(errors) => (None, &errors[..]),
    };
    let modules = check::module_hashes(&prepared.plan);
    let mut verdicts = check::verdicts(&metadata, &prepared.plan, &modules, operators, errors);
    for verdict in &mut verdicts {
        let renames = &prepared.asked.mapping.renames;
        let renamed = renames.iter().find(|(_, new)| *new == verdict.operator);
        verdict.renamed_from = renamed.map(|(old, _)| old.clone());
        // The point's states are under the operators' new ids already.
        verdict.timers = timers.get(&verdict.operator).copied();
    }
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
        super::inspect::print_positions(&positions);
        job.operators().iter().for_each(print_remap);
        return Ok(ExitCode::SUCCESS);
    }
    check::print(&verdicts, &point);
    super::inspect::print_positions(&positions);
    Err(prepared.refusal(&problems))
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

/// Starts the job and runs it in the foreground until it ends. Prepared and built a second
/// time if taking over the point's job on an object store shows that it published a newer
/// point meanwhile (see [`take_over_point_job`]). With `log_file` (`--detach`), that file
/// becomes the job's log once the job has an id.
/// With `workers` (how many, where, and their arguments), the subtasks run on `host worker`
/// processes (or Pods), started first and stopped once the job ended.
pub(super) async fn run_job(
    store: Store,
    prepared: Prepared,
    log_file: Option<PathBuf>,
    workers: Option<(super::cluster::ClusterArgs, super::cluster::WorkerArgsOf)>,
) -> anyhow::Result<ExitCode> {
    let Some((asked, args)) = workers else {
        return run_here_or_there(store, prepared, log_file, None).await;
    };
    let cluster = super::cluster::Cluster::start(&store, asked, args).await?;
    let ran = run_here_or_there(store, prepared, log_file, Some(cluster.remote())).await;
    cluster.stop().await;
    ran
}

/// Starts the job, its subtasks here or through `remote`, and runs it until it ends.
async fn run_here_or_there(
    store: Store,
    mut prepared: Prepared,
    log_file: Option<PathBuf>,
    remote: Option<Arc<dyn Remote>>,
) -> anyhow::Result<ExitCode> {
    for attempt in 1..=2 {
        let writable = admission::writable_mounts(&prepared.plan);
        // Refused at once, before anything is compiled; decided again under the start lock.
        refuse(&store, &prepared, &writable)?;
        let engine = engine(&store, CacheMode::Deferred)?;
        let job_id = JobId::generate();
        let plan = prepared.plan.clone();
        let job = build(
            &store,
            engine.clone(),
            &mut prepared,
            (plan, job_id.clone()),
            remote.clone(),
        )
        .await
        .map_err(|errors| {
            let problems: Vec<String> = errors.iter().map(ToString::to_string).collect();
            prepared.refusal(&problems)
        })?;
        let admitting = Admitting {
            job: job_id,
            writable_mounts: writable,
            modules: job.operators(),
            first: job.first_checkpoint(),
            last: attempt == 2,
        };
        let Some((status, _claim)) = admit(&store, &prepared, admitting)? else {
            prepared = prepared.again(&store)?;
            continue;
        };
        if let Some(log_file) = &log_file {
            super::detach::claim_log(&store, log_file, &status.job)?;
        }
        // The job really starts: from here on, it may change files.
        engine.write_cache();
        return run_admitted(store, job, status).await;
    }
    unreachable!("the second attempt is admitted or refused")
}

/// Refuses the job if anything in [`refusals`] says it may not start.
fn refuse(store: &Store, prepared: &Prepared, writable: &[PathBuf]) -> anyhow::Result<()> {
    let problems = refusals(store, prepared, writable)?;
    if problems.is_empty() {
        return Ok(());
    }
    Err(prepared.refusal(&problems))
}

/// A built job, as [`admit`] needs it.
struct Admitting<'a> {
    job: JobId,
    writable_mounts: Vec<PathBuf>,
    /// Its operators, with the hash of the module each loaded.
    modules: &'a [runtime::OperatorInfo],
    /// The number its first checkpoint takes (its lease starts at that epoch's generation).
    first: CheckpointId,
    /// The last attempt: refuse rather than prepare again.
    last: bool,
}

/// Under the start lock: refuses the job if it conflicts with one running now, else takes
/// over the point's job on an object store (`None` if the point moved meanwhile: prepare
/// again, or, when `last`, refuse), puts its modules into the module store, records the job
/// (with its modules, which `host gc` then keeps), claims it as running in this process, and
/// sweeps checkpoints in progress that jobs no longer running left behind.
fn admit(
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

/// Runs an admitted job: control socket, the id on stdout, the job, its final status.
async fn run_admitted(
    store: Store,
    job: runtime::Job,
    mut status: JobStatus,
) -> anyhow::Result<ExitCode> {
    let job_id = status.job.clone();
    let socket = store.layout().control_socket(&job_id);
    let listener =
        control::bind(&socket).with_context(|| format!("cannot listen on {}", socket.display()))?;

    // The id goes out before the job starts, so that whoever started it learns the id even if
    // the job fails (or the process is killed) in its first moments.
    println!("{job_id}");
    std::io::stdout().flush()?;
    let handle = job.spawn();
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel();
    let job_side = (handle.requests(), handle.metrics());
    let server = tokio::spawn(control::serve(listener, job_side, serving_stopped));
    match &status.resumed_from {
        Some(from) => {
            let from = store.display(from);
            tracing::info!(job = %job_id, "running, resumed from {from}");
        }
        None => tracing::info!(job = %job_id, "running"),
    }
    let interrupt = tokio::spawn(cancel_on_signal(handle.requests()));
    let outcome = handle.wait().await;
    interrupt.abort();
    let _ = stop_serving.send(());
    let _ = server.await;
    let _ = std::fs::remove_file(&socket);

    let (state, code) = match outcome {
        Outcome::Finished => (JobState::Finished, ExitCode::SUCCESS),
        Outcome::Stopped(saved) => (
            JobState::Stopped {
                savepoint: saved.map(|s| s.id),
            },
            ExitCode::SUCCESS,
        ),
        Outcome::Failed(failure) => {
            let error = failure.to_string();
            let shown = super::terminal::escaped(&error);
            eprintln!("error: job {job_id} failed: {shown}");
            (JobState::Failed { error }, ExitCode::from(3))
        }
    };
    status.state = state;
    store.write_status(&status)?;
    if let Err(e) = store.release_lease(&job_id) {
        tracing::warn!(job = %job_id, "its lease still says it runs: {e}");
    }
    Ok(code)
}

/// Cancels the job on ctrl-c or SIGTERM.
async fn cancel_on_signal(requests: tokio::sync::mpsc::Sender<runtime::Request>) {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        Some(_) = async { terminate.as_mut()?.recv().await } => {}
    }
    let (reply, _) = tokio::sync::oneshot::channel();
    let _ = requests.send(runtime::Request::Cancel { reply }).await;
}
