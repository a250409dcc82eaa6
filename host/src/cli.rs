//! The command line: clap structs (what was typed), then one function per command.
//!
//! Only this module prints to stdout. Listings take `--json` for scripts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use host::barrier::Phase;
use host::control::{self, ControlRequest, ControlResponse};
use host::engine::{Engine, Limits};
use host::ids::{JobId, SavepointId};
use host::runtime::{self, JobSpec, Outcome, RestoreFrom};
use host::savepoint::{self, RestorePoint};
use host::store::{FaultHook, JobState, JobStatus, Store};
use host::topology::Plan;

/// Runs stream jobs of WebAssembly components, with checkpoints and savepoints.
#[derive(Debug, Parser)]
#[command(name = "host", version)]
pub struct Args {
    /// The state folder (jobs, checkpoints, savepoints, module cache).
    #[arg(long, env = "HOST_HOME", global = true)]
    pub home: Option<PathBuf>,
    /// Print listings as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a job and run it in the foreground; prints its id first.
    Run {
        /// The job file.
        job_file: PathBuf,
        /// Resume from a savepoint id, a folder, a job id (its latest point) or JOB_ID:N.
        #[arg(long = "from", value_name = "POINT")]
        from: Option<String>,
        /// Drop state of operators that are no longer in the job instead of refusing.
        #[arg(long)]
        allow_non_restored_state: bool,
        /// Override the job file's checkpoint interval (0 disables periodic checkpoints).
        #[arg(long, value_name = "MS")]
        checkpoint_interval: Option<u64>,
        /// Fault injection for tests: abort the process at PHASE of checkpoint N or later
        /// (state-write, metadata-written, published, sink-committed).
        #[arg(long, value_name = "PHASE:N", hide = true, value_parser = parse_fault)]
        crash_at: Option<(Phase, u64)>,
        /// Fault injection for tests: fail the write at PHASE of checkpoint N with "no space
        /// left on device" (state-write, metadata-written).
        #[arg(long, value_name = "PHASE:N", hide = true, value_parser = parse_fault)]
        fail_write_at: Option<(Phase, u64)>,
    },
    /// Take a savepoint of a running job; prints its id and folder.
    Save {
        /// The job.
        job: JobId,
        /// Stop the job right after the savepoint.
        #[arg(long)]
        stop: bool,
    },
    /// Stop a running job; with --save, after a final savepoint.
    Stop {
        /// The job.
        job: JobId,
        /// Take a final savepoint and commit the output up to it.
        #[arg(long)]
        save: bool,
    },
    /// List running and ended jobs.
    List,
    /// List savepoints and retained checkpoints.
    Savepoints {
        /// Only those of this job.
        #[arg(long)]
        job: Option<JobId>,
    },
    /// Show a point's metadata, verifying every checksum.
    Inspect {
        /// A savepoint id, folder, job id or JOB_ID:N.
        point: String,
    },
    /// Delete a savepoint (the only way one is removed).
    Rm {
        /// The savepoint id.
        savepoint: SavepointId,
    },
    /// Dry run: would this job restore from this point? Runs nothing.
    Check {
        /// The job file.
        job_file: PathBuf,
        /// The point to restore from.
        #[arg(long = "from", value_name = "POINT")]
        from: String,
        /// Drop state of operators that are no longer in the job instead of refusing.
        #[arg(long)]
        allow_non_restored_state: bool,
    },
}

/// Runs the command; `Ok` carries the exit code of a command that ran.
pub fn run(args: Args, home: PathBuf) -> anyhow::Result<ExitCode> {
    let store = Store::open(&home)
        .with_context(|| format!("cannot open the state folder {}", home.display()))?;
    let json = args.json;
    match args.command {
        Command::Run {
            job_file,
            from,
            allow_non_restored_state,
            checkpoint_interval,
            crash_at,
            fail_write_at,
        } => {
            let store = match (crash_at, fail_write_at) {
                (None, None) => store,
                _ => store.with_faults(inject_faults(crash_at, fail_write_at)),
            };
            let prepared = prepare(
                &store,
                &job_file,
                from.as_deref(),
                allow_non_restored_state,
                checkpoint_interval,
            )?;
            tokio_runtime()?.block_on(run_job(store, prepared))
        }
        Command::Check {
            job_file,
            from,
            allow_non_restored_state,
        } => {
            let prepared = prepare(
                &store,
                &job_file,
                Some(&from),
                allow_non_restored_state,
                None,
            )?;
            tokio_runtime()?.block_on(check_job(store, prepared))
        }
        Command::Save { job, stop } => save(&store, &job, stop),
        Command::Stop { job, save: true } => save(&store, &job, true),
        Command::Stop { job, save: false } => cancel(&store, &job),
        Command::List => list_jobs(&store, json),
        Command::Savepoints { job } => list_points(&store, job.as_ref(), json),
        Command::Inspect { point } => inspect(&store, &point, json),
        Command::Rm { savepoint } => {
            let dir = store.remove_savepoint(&savepoint).map_err(|e| match e {
                host::store::StoreError::Io { source, .. }
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    anyhow::anyhow!("no savepoint `{savepoint}` (see `host savepoints`)")
                }
                e => e.into(),
            })?;
            println!("removed {savepoint} ({})", dir.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn tokio_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

/// Everything a job needs, read and verified before anything is instantiated.
struct Prepared {
    job_file: PathBuf,
    text: String,
    plan: Plan,
    restore: Option<(PathBuf, RestoreFrom)>,
}

fn prepare(
    store: &Store,
    job_file: &Path,
    from: Option<&str>,
    allow_non_restored: bool,
    checkpoint_interval: Option<u64>,
) -> anyhow::Result<Prepared> {
    let text = std::fs::read_to_string(job_file)
        .with_context(|| format!("cannot read job file {}", job_file.display()))?;
    let base = job_file.parent().map(Path::to_path_buf).unwrap_or_default();
    let base = if base.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        base
    };
    let mut plan =
        Plan::from_toml(&text, &base).with_context(|| format!("{}", job_file.display()))?;
    if let Some(ms) = checkpoint_interval {
        plan.checkpoint_interval_ms = ms;
    }
    let restore = match from {
        None => None,
        Some(from) => {
            let point = RestorePoint::parse(from).map_err(anyhow::Error::msg)?;
            let dir = savepoint::resolve(store, &point)?;
            let (metadata, states) = savepoint::load_for(store, &dir, &plan, allow_non_restored)?;
            let dir = std::path::absolute(&dir).unwrap_or(dir);
            Some((dir, RestoreFrom { metadata, states }))
        }
    };
    Ok(Prepared {
        job_file: job_file.to_owned(),
        text,
        plan,
        restore,
    })
}

/// Reads a fault-injection point `PHASE:N`.
fn parse_fault(text: &str) -> Result<(Phase, u64), String> {
    let (phase, n) = text.split_once(':').ok_or("expected PHASE:N")?;
    Ok((
        phase.parse()?,
        n.parse()
            .map_err(|_| format!("`{n}` is not a checkpoint number"))?,
    ))
}

/// Fault injection for tests: abort the process at one phase, fail a write at another.
fn inject_faults(crash_at: Option<(Phase, u64)>, fail_write_at: Option<(Phase, u64)>) -> FaultHook {
    Arc::new(move |phase, checkpoint| {
        if crash_at.is_some_and(|(at, n)| at == phase && checkpoint.0 >= n) {
            eprintln!(
                "crash injected at {} of checkpoint {checkpoint}",
                phase.name()
            );
            std::process::abort();
        }
        if fail_write_at == Some((phase, checkpoint.0)) {
            // ENOSPC: what a full disk answers.
            return Err(std::io::Error::from_raw_os_error(28));
        }
        Ok(())
    })
}

async fn build(
    store: &Store,
    prepared: Prepared,
    job: JobId,
) -> anyhow::Result<(runtime::Job, Option<PathBuf>, String, String)> {
    let engine =
        Arc::new(Engine::new(&store.layout().cache()).map_err(|e| anyhow::anyhow!("{e:#}"))?);
    let (from, restore) = match prepared.restore {
        Some((from, restore)) => (Some(from), Some(restore)),
        None => (None, None),
    };
    let name = prepared.plan.name.clone();
    let spec = JobSpec {
        job,
        plan: prepared.plan,
        job_file: prepared.text.clone(),
        restore,
        limits: Limits::default(),
    };
    match runtime::build(engine, store.clone(), spec).await {
        Ok(job) => Ok((job, from, prepared.text, name)),
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            match &from {
                Some(from) => bail!(
                    "cannot start {} from {}:\n  - {}",
                    prepared.job_file.display(),
                    from.display(),
                    list.join("\n  - ")
                ),
                None => bail!(
                    "cannot start {}:\n  - {}",
                    prepared.job_file.display(),
                    list.join("\n  - ")
                ),
            }
        }
    }
}

async fn check_job(store: Store, prepared: Prepared) -> anyhow::Result<ExitCode> {
    let (job, from, _, _) = build(&store, prepared, JobId::generate()).await?;
    let operators: Vec<String> = job
        .operators()
        .iter()
        .map(|op| format!("{} ({} {})", op.id, op.module_name, op.module_version))
        .collect();
    println!(
        "ok: {} would resume from {}",
        operators.join(", "),
        from.unwrap_or_default().display()
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_job(store: Store, prepared: Prepared) -> anyhow::Result<ExitCode> {
    let job_id = JobId::generate();
    let (job, from, text, name) = build(&store, prepared, job_id.clone()).await?;
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as u64;
    let mut status = JobStatus {
        job: job_id.clone(),
        name,
        started_unix_ms,
        resumed_from: from.clone(),
        state: JobState::Running {
            pid: std::process::id(),
        },
    };
    store.create_job(&status, &text)?;
    let socket = store.layout().control_socket(&job_id);
    let listener =
        control::bind(&socket).with_context(|| format!("cannot listen on {}", socket.display()))?;

    // The id goes out before the job starts, so that whoever started it learns the id even if
    // the job fails (or the process is killed) in its first moments.
    println!("{job_id}");
    std::io::stdout().flush()?;
    let handle = job.spawn();
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(control::serve(listener, handle.requests(), serving_stopped));
    match &from {
        Some(from) => tracing::info!(job = %job_id, "running, resumed from {}", from.display()),
        None => tracing::info!(job = %job_id, "running"),
    }

    let requests = handle.requests();
    let interrupt = tokio::spawn(async move {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            Some(_) = async { terminate.as_mut()?.recv().await } => {}
        }
        let (reply, _) = tokio::sync::oneshot::channel();
        let _ = requests.send(runtime::Request::Cancel { reply }).await;
    });
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
        Outcome::Failed(error) => {
            eprintln!("error: job {job_id} failed: {error}");
            (JobState::Failed { error }, ExitCode::from(3))
        }
    };
    status.state = state;
    store.write_status(&status)?;
    Ok(code)
}

fn request(store: &Store, job: &JobId, request: ControlRequest) -> anyhow::Result<ControlResponse> {
    let socket = store.layout().control_socket(job);
    match control::call(&socket, &request) {
        Ok(response) => Ok(response),
        Err(control::ControlError::NotRunning(_)) => match store.read_status(job) {
            Err(_) => bail!("no job `{job}` (see `host list`)"),
            Ok(status) => bail!(
                "job `{job}` is not running ({})",
                describe_state(&status.state, false)
            ),
        },
        Err(e) => Err(e.into()),
    }
}

fn save(store: &Store, job: &JobId, stop: bool) -> anyhow::Result<ExitCode> {
    match request(store, job, ControlRequest::Save { stop })? {
        ControlResponse::Saved(saved) => {
            println!("{}", saved.id);
            println!("{}", saved.path.display());
            Ok(ExitCode::SUCCESS)
        }
        ControlResponse::Error { message } => bail!("job `{job}`: {message}"),
        other => bail!("job `{job}`: unexpected answer {other:?}"),
    }
}

fn cancel(store: &Store, job: &JobId) -> anyhow::Result<ExitCode> {
    match request(store, job, ControlRequest::Cancel)? {
        ControlResponse::Cancelled => {
            println!("stopped {job}");
            Ok(ExitCode::SUCCESS)
        }
        ControlResponse::Error { message } => bail!("job `{job}`: {message}"),
        other => bail!("job `{job}`: unexpected answer {other:?}"),
    }
}

fn describe_state(state: &JobState, listening: bool) -> String {
    match state {
        JobState::Running { .. } if listening => "running".to_owned(),
        JobState::Running { .. } => "crashed (the process running it is gone)".to_owned(),
        JobState::Finished => "finished".to_owned(),
        JobState::Stopped {
            savepoint: Some(sp),
        } => format!("stopped with savepoint {sp}"),
        JobState::Stopped { savepoint: None } => "stopped".to_owned(),
        JobState::Failed { error } => format!("failed: {error}"),
    }
}

fn list_jobs(store: &Store, json: bool) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for job in store.jobs()? {
        let Ok(status) = store.read_status(&job) else {
            continue;
        };
        let listening = control::is_listening(&store.layout().control_socket(&job));
        rows.push((describe_state(&status.state, listening), status));
    }
    if json {
        let values: Vec<_> = rows
            .iter()
            .map(|(state, status)| serde_json::json!({ "job": status.job, "name": status.name, "state": state, "started_unix_ms": status.started_unix_ms }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&values)?);
    } else {
        for (state, status) in rows {
            println!("{}\t{}\t{}", status.job, status.name, state);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_points(store: &Store, job: Option<&JobId>, json: bool) -> anyhow::Result<ExitCode> {
    let listed = savepoint::list(store, job)?;
    if json {
        let values: Vec<_> = listed
            .iter()
            .map(|l| {
                serde_json::json!({
                    "savepoint": l.savepoint,
                    "path": l.dir,
                    "job": l.metadata.as_ref().ok().map(|m| &m.job),
                    "checkpoint": l.metadata.as_ref().ok().map(|m| m.checkpoint.0),
                    "state_bytes": l.metadata.as_ref().ok().map(|m| m.state_bytes()),
                    "error": l.metadata.as_ref().err(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&values)?);
        return Ok(ExitCode::SUCCESS);
    }
    for l in listed {
        let kind = l
            .savepoint
            .as_ref()
            .map_or("checkpoint".to_owned(), |id| format!("savepoint {id}"));
        match &l.metadata {
            Ok(m) => println!(
                "{kind}\t{}:{}\t{} bytes\t{}",
                m.job,
                m.checkpoint,
                m.state_bytes(),
                l.dir.display()
            ),
            Err(e) => println!("{kind}\tunreadable: {e}\t{}", l.dir.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn inspect(store: &Store, point: &str, json: bool) -> anyhow::Result<ExitCode> {
    let point = RestorePoint::parse(point).map_err(anyhow::Error::msg)?;
    let dir = savepoint::resolve(store, &point)?;
    let loaded = store.read_point(&dir)?;
    store.read_states(&loaded)?;
    let m = &loaded.metadata;
    if json {
        let operators: Vec<_> = m
            .operators
            .iter()
            .map(|op| {
                serde_json::json!({
                    "id": op.id, "module_sha256": op.module_sha256, "module_name": op.module_name,
                    "module_version": op.module_version, "parallelism": op.parallelism,
                    "files": op.files.iter().map(|f| serde_json::json!({
                        "subtask": f.subtask, "file": f.file, "len": f.len, "checksum_xxh3_128": hex::encode(f.checksum),
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        let value = serde_json::json!({
            "path": dir, "job": m.job, "checkpoint": m.checkpoint.0, "kind": format!("{:?}", m.kind).to_lowercase(),
            "completed_unix_ms": m.completed_unix_ms, "operators": operators,
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}  ({:?} {} of job {}, all checksums verified)",
        dir.display(),
        m.kind,
        m.checkpoint,
        m.job
    );
    for op in &m.operators {
        println!(
            "  {}  {} {}  sha256:{}  parallelism {}",
            op.id, op.module_name, op.module_version, op.module_sha256, op.parallelism
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
    Ok(ExitCode::SUCCESS)
}
