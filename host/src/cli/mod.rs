//! The command line: clap structs (what was typed), then one function per command; starting a
//! job (`run`, `check`) lives in [`start`].
//!
//! Only this module prints to stdout. Listings take `--json` for scripts.

mod check;
mod new;
mod start;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

use host::barrier::Phase;
use host::control::{self, ControlRequest, ControlResponse};
use host::ids::{JobId, OperatorId, SavepointId};
use host::savepoint::{self, Mapping, RestorePoint};
use host::store::{FaultHook, JobState, Store};

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
        /// The operator OLD of the point is NEW in the job: its state follows it.
        #[arg(long = "rename", value_name = "OLD=NEW", value_parser = parse_rename)]
        renames: Vec<(OperatorId, OperatorId)>,
        /// Override the job file's checkpoint interval (0 disables periodic checkpoints).
        #[arg(long, value_name = "MS")]
        checkpoint_interval: Option<u64>,
        /// Fault injection for tests: abort the process at PHASE of checkpoint N or later
        /// (state-write, metadata-written, published, sink-committed, restored, sink-recovered).
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
    /// Write a new operator project (outside this workspace) that builds and tests as is.
    New {
        /// The project's name (a folder of that name is created).
        name: String,
        /// Its language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: new::Lang,
        /// The world it implements.
        #[arg(long, value_enum, default_value = "operator")]
        role: new::NewRole,
        /// The SDK to depend on (default: the one of the checkout this host was built from).
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
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
        /// The operator OLD of the point is NEW in the job: its state follows it.
        #[arg(long = "rename", value_name = "OLD=NEW", value_parser = parse_rename)]
        renames: Vec<(OperatorId, OperatorId)>,
    },
}

/// Runs the command; `Ok` carries the exit code of a command that ran.
pub fn run(args: Args, home: PathBuf) -> anyhow::Result<ExitCode> {
    let store = match args.command {
        // Only these write to the state folder; the others create and change nothing in it.
        Command::New {
            name,
            lang,
            role,
            sdk,
        } => return new::new_project(&name, lang, role, sdk),
        Command::Run { .. } | Command::Rm { .. } => Store::open(&home)
            .with_context(|| format!("cannot open the state folder {}", home.display()))?,
        _ => Store::at(&home),
    };
    let json = args.json;
    match args.command {
        Command::Run {
            job_file,
            from,
            allow_non_restored_state,
            renames,
            checkpoint_interval,
            crash_at,
            fail_write_at,
        } => {
            let store = match (crash_at, fail_write_at) {
                (None, None) => store,
                _ => store.with_faults(inject_faults(crash_at, fail_write_at)),
            };
            let mapping = Mapping {
                allow_non_restored: allow_non_restored_state,
                renames,
            };
            let prepared = start::prepare(
                &store,
                &job_file,
                from.as_deref(),
                &mapping,
                checkpoint_interval,
            )?;
            tokio_runtime()?.block_on(start::run_job(store, prepared))
        }
        Command::Check {
            job_file,
            from,
            allow_non_restored_state,
            renames,
        } => {
            let mapping = Mapping {
                allow_non_restored: allow_non_restored_state,
                renames,
            };
            let prepared = start::prepare(&store, &job_file, Some(&from), &mapping, None)?;
            tokio_runtime()?.block_on(start::check_job(store, prepared, json))
        }
        Command::New { .. } => unreachable!("handled before the state folder is opened"),
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

/// Reads `--rename OLD=NEW`: two operator ids.
fn parse_rename(text: &str) -> Result<(OperatorId, OperatorId), String> {
    let (old, new) = text.split_once('=').ok_or("expected OLD=NEW")?;
    Ok((old.parse()?, new.parse()?))
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
                    "state_bytes": l.metadata.as_ref().ok().map(|_| folder_bytes(&l.dir)),
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
                folder_bytes(&l.dir),
                l.dir.display()
            ),
            Err(e) => println!("{kind}\tunreadable: {e}\t{}", l.dir.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The bytes of the files in a point's folder: what copying it moves (segments it shares with
/// other points by hard links included).
fn folder_bytes(dir: &std::path::Path) -> u64 {
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    files
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
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
