//! The command line: clap structs (what was typed), then one function per command; starting a
//! job (`run`, `check`) lives in [`start`].
//!
//! Only this module prints to stdout. Listings take `--json` for scripts.

mod check;
mod cluster;
mod compile;
mod detach;
mod fault;
mod grants;
mod inspect;
mod new;
mod points;
mod progress;
mod s3;
mod shadow;
mod start;
mod state;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use host::ids::{JobId, OperatorId};
use host::jobs;
use host::points::savepoint::Mapping;
use host::runtime::{Canary, UpgradeSpec};
use host::store::Store;

/// Runs stream jobs of WebAssembly components, with checkpoints and savepoints.
#[derive(Debug, Parser)]
#[command(name = "host", version)]
pub struct Args {
    /// The state folder (jobs, checkpoints, savepoints, module cache).
    #[arg(long, env = "HOST_HOME", global = true)]
    pub home: Option<PathBuf>,
    /// Where checkpoints and savepoints live: `s3://bucket/prefix` on an S3-compatible object
    /// store (credentials, region and endpoint from the usual `AWS_*` variables), instead of
    /// the state folder. Jobs' status, locks and the module cache stay in the state folder.
    #[arg(long, env = "HOST_STORE", global = true, value_name = "URL")]
    pub store: Option<String>,
    /// Print listings as JSON.
    #[arg(long, global = true)]
    pub json: bool,
    /// `perfmap`: tell `perf` the names of the guests' compiled functions (in
    /// /tmp/perf-<pid>.map; guests keep their names only when built without `strip`).
    #[arg(long, env = "HOST_PROFILE", global = true, value_enum)]
    pub profile: Option<Profile>,
    #[command(subcommand)]
    command: Command,
}

/// A profiler the engine reports compiled guest code to.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum Profile {
    /// `perf`'s map of JIT-compiled functions.
    Perfmap,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a job and run it in the foreground; prints its id first. Without a job file,
    /// `--from POINT` runs the program that wrote POINT (its recorded definition, its modules
    /// from the module store): the rollback after a bad upgrade.
    Run(RunArgs),
    /// Print the log of a job started with `run --detach`.
    Logs {
        /// The job.
        job: JobId,
        /// Keep printing as the job writes, until it ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Take a savepoint of a running job; prints its id and folder.
    Save {
        /// The job.
        job: JobId,
        /// Stop the job right after the savepoint.
        #[arg(long)]
        stop: bool,
    },
    /// Swap one operator's module of a running job, live: at the next checkpoint its subtasks
    /// snapshot, the new module restores that snapshot and runs on; a failure within the
    /// canary window puts the old module back. Prints the pause it caused.
    Upgrade(UpgradeArgs),
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
        /// As a tree: which point came from which job, and each job's program (the module of
        /// each operator, short SHA-256).
        #[arg(long)]
        tree: bool,
    },
    /// Show a point's metadata, verifying every checksum.
    Inspect {
        /// A savepoint id, folder, job id or JOB_ID:N.
        point: String,
    },
    /// Delete a savepoint (the only way one is removed), or a retained checkpoint (JOB_ID:N)
    /// of a job that no longer runs; then remove the modules nothing refers to any more.
    Rm {
        /// The savepoint id, or JOB_ID:N.
        point: String,
    },
    /// Remove the modules of the module store that no point and no running job refers to.
    Gc {
        /// List what would be removed; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Write a point, the modules it names and its job definition into a new folder, from
    /// which `host run --from DIR` resumes on any machine.
    Export {
        /// A savepoint id, folder, job id or JOB_ID:N.
        point: String,
        /// The folder to create (or an empty one).
        dir: PathBuf,
    },
    /// Read an operator's state offline, or write a savepoint with it edited, bootstrapped
    /// from data, or split into another number of key groups (the original is never changed).
    State {
        #[command(subcommand)]
        command: state::StateCommand,
    },
    /// Compile components into the state folder's compiled-module cache, so that the first
    /// job to use one starts without waiting (a Python or JavaScript component takes tens of
    /// seconds). Prints each one's SHA-256 and whether it was compiled or already there.
    Compile {
        /// The `.wasm` components.
        #[arg(required = true)]
        modules: Vec<PathBuf>,
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
        /// The SDK's folder (Rust: `sdk/rust/`, depended on by path; Python: `sdk/python/`, JS:
        /// `sdk/js/`, copied with its toolchain's lock file) [default: that of the checkout
        /// this host was built from].
        #[arg(long, value_name = "PATH")]
        sdk: Option<PathBuf>,
    },
    /// Dry run: would this job restore from this point? Runs nothing.
    Check(CheckArgs),
    /// Run the old and the new job from one point on the same input, changing nothing (every
    /// sink captured, every mount read-only, checkpoints in a temporary folder), and compare
    /// their output and keyed state. Exit status 0: they agree; 1: they differ; 2: a run failed.
    Shadow(shadow::ShadowArgs),
    /// Serve the HTTP API, `/metrics` and the dashboard over the state folder, to holders of
    /// a token; prints the dashboard's address with it.
    Serve {
        /// The address to listen on (any other than loopback requires --token-file).
        #[arg(long, default_value = host::serve::LISTEN_DEFAULT)]
        listen: std::net::SocketAddr,
        /// A file whose first line is the token every request must present [default: one
        /// generated into the state folder's `serve-token` on the first start, then reused].
        #[arg(long, value_name = "PATH")]
        token_file: Option<PathBuf>,
    },
    /// Run the subtasks a coordinator (`host run --workers`) deploys here, until it goes
    /// away; the cluster's token comes from `HOST_WORKER_TOKEN`.
    Worker(cluster::WorkerArgs),
    /// Print a completion script for a shell.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `host run`'s flags.
#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The job file [default: the job definition and modules POINT records].
    job_file: Option<PathBuf>,
    /// Resume from a savepoint id, a folder, a job id (its latest point) or JOB_ID:N.
    #[arg(long = "from", value_name = "POINT")]
    from: Option<String>,
    #[command(flatten)]
    mapping: MappingArgs,
    /// Override the job file's checkpoint interval (0 disables periodic checkpoints).
    #[arg(long, value_name = "MS")]
    checkpoint_interval: Option<u64>,
    #[command(flatten)]
    faults: fault::FaultArgs,
    /// Without a job file, grant the folders the point's recorded job mounts even if the point
    /// was written elsewhere (an export, an object store, another user): shown, then granted.
    #[arg(long)]
    trust_grants: bool,
    #[command(flatten)]
    cluster: cluster::ClusterArgs,
    /// Run in the background: print the job's id and return; its output goes to
    /// `jobs/<id>/log` (see `host logs`).
    #[arg(long)]
    detach: bool,
    /// Set by `--detach`: the file holding this process's output, moved into the job's
    /// folder once the job has an id.
    #[arg(long, value_name = "PATH", hide = true)]
    log_file: Option<PathBuf>,
}

/// `host check`'s flags.
#[derive(Debug, clap::Args)]
struct CheckArgs {
    /// The job file [default: the job definition and modules POINT records].
    job_file: Option<PathBuf>,
    /// The point to restore from.
    #[arg(long = "from", value_name = "POINT")]
    from: String,
    #[command(flatten)]
    mapping: MappingArgs,
}

/// How the operators of a point map to those of the job: `run`'s and `check`'s flags.
#[derive(Debug, clap::Args)]
struct MappingArgs {
    /// Drop state of operators that are no longer in the job instead of refusing.
    #[arg(long)]
    allow_non_restored_state: bool,
    /// The operator OLD of the point is NEW in the job: its state follows it.
    #[arg(long = "rename", value_name = "OLD=NEW", value_parser = parse_rename)]
    renames: Vec<(OperatorId, OperatorId)>,
}

impl From<MappingArgs> for Mapping {
    fn from(args: MappingArgs) -> Mapping {
        Mapping {
            allow_non_restored: args.allow_non_restored_state,
            renames: args.renames,
        }
    }
}

/// `host upgrade`'s flags.
#[derive(Debug, clap::Args)]
struct UpgradeArgs {
    /// The job.
    job: JobId,
    /// The operator whose module is swapped (role `operator`).
    #[arg(long, value_name = "ID")]
    operator: OperatorId,
    /// The new module.
    #[arg(long, value_name = "NEW.wasm")]
    module: PathBuf,
    /// The new module's configuration, replacing the operator's (which it keeps without).
    #[arg(long = "config", value_name = "K=V", value_parser = parse_config)]
    config: Vec<(String, String)>,
    /// The canary window: records the new module must process before the swap is final.
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    canary_records: u64,
    /// The canary window: milliseconds the new module must run before the swap is final.
    #[arg(long, value_name = "T", default_value_t = 1_000)]
    canary_ms: u64,
}

impl UpgradeArgs {
    /// The upgrade as the running job takes it: the module's path made absolute.
    fn spec(self) -> anyhow::Result<UpgradeSpec> {
        let module = std::path::absolute(&self.module)
            .with_context(|| format!("{}: cannot resolve the path", self.module.display()))?;
        Ok(UpgradeSpec {
            operator: self.operator,
            module,
            config: (!self.config.is_empty()).then_some(self.config),
            canary: Canary {
                records: self.canary_records,
                ms: self.canary_ms,
            },
        })
    }
}

/// Runs the command; `Ok` carries the exit code of a command that ran.
pub fn run(args: Args, home: PathBuf) -> anyhow::Result<ExitCode> {
    let Args {
        store,
        json,
        command,
        profile,
        ..
    } = args;
    if let Some(Profile::Perfmap) = profile {
        host::engine::name_functions_for_perf();
    }
    match command {
        // Neither opens the state folder.
        Command::New {
            name,
            lang,
            role,
            sdk,
        } => new::new_project(&name, lang, role, sdk),
        Command::Completions { shell } => {
            let mut command = <Args as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "host", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let opened = open_store(&command, &home, store.as_deref())?;
            let workers = cluster::WorkerArgsOf {
                home: home.clone(),
                store: store.clone(),
            };
            run_on(opened, command, json, workers)
        }
    }
}

/// The state folder at `home` for `command`, checkpoints and savepoints on the object store at
/// `url` if one is given.
fn open_store(command: &Command, home: &Path, url: Option<&str>) -> anyhow::Result<Store> {
    let store = match command {
        // Only these write to the state folder; the others create and change nothing in it
        // (but `serve`, which writes its token once: `host::serve::token`).
        Command::Run(_)
        | Command::Worker(_)
        | Command::Rm { .. }
        | Command::Gc { dry_run: false }
        | Command::Compile { .. } => Store::open(home)
            .with_context(|| format!("cannot open the state folder {}", home.display()))?,
        Command::State { command } if command.writes() => Store::open(home)
            .with_context(|| format!("cannot open the state folder {}", home.display()))?,
        _ => Store::at(home),
    };
    Ok(match url {
        None => store,
        Some(url) => {
            let points = s3::object_points(url, store.layout().clone())?;
            store.with_points(points)
        }
    })
}

/// Runs a command that works on the state folder.
/// `worker_args` say what a worker started for a job gets before `worker`.
fn run_on(
    store: Store,
    command: Command,
    json: bool,
    worker_args: cluster::WorkerArgsOf,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run_job(store, args, worker_args),
        Command::Worker(args) => cluster::run_worker(store, args),
        Command::Check(args) => check_job(store, args, json),
        Command::Shadow(args) => Ok(shadow::shadow(&store, args, json)),
        Command::New { .. } | Command::Completions { .. } => {
            unreachable!("handled before the state folder is opened")
        }
        Command::Serve { listen, token_file } => serve(store, listen, token_file.as_deref()),
        Command::Save { job, stop } => save(&store, &job, stop),
        Command::Upgrade(args) => upgrade(&store, args),
        Command::Stop { job, save: true } => save(&store, &job, true),
        Command::Stop { job, save: false } => cancel(&store, &job),
        Command::List => list_jobs(&store, json),
        Command::Logs { job, follow } => detach::logs(&store, &job, follow),
        Command::Savepoints { job, tree: false } => list_points(&store, job.as_ref(), json),
        Command::Savepoints { job, tree: true } => points::tree(&store, job.as_ref(), json),
        Command::Gc { dry_run } => points::gc(&store, dry_run, json),
        Command::Export { point, dir } => points::export(&store, &point, &dir),
        Command::Inspect { point } => inspect::inspect(&store, &point, json),
        Command::Rm { point } => points::rm(&store, &point),
        Command::State { command } => state::run(&store, command),
        Command::Compile { modules } => compile::compile(&store, &modules),
    }
}

/// `host run`: hands the job to a process of its own with `--detach`; else prepares it (with
/// the faults of `--crash-at` and `--fail-write-at` injected, in a test build) and runs it
/// until it ends.
fn run_job(
    store: Store,
    args: RunArgs,
    worker_args: cluster::WorkerArgsOf,
) -> anyhow::Result<ExitCode> {
    if args.detach {
        return detach::run_detached(&store);
    }
    let store = args.faults.inject(store);
    let prepared = start::prepare(
        &store,
        args.job_file.as_deref(),
        args.from.as_deref(),
        &args.mapping.into(),
        args.checkpoint_interval,
    )?;
    prepared.check_grants(&store, args.trust_grants)?;
    let workers = args.cluster.wanted().then_some((args.cluster, worker_args));
    tokio_runtime()?.block_on(start::run_job(store, prepared, args.log_file, workers))
}

/// `host check`: prepares the job as `run` would, then reports what building it says.
fn check_job(store: Store, args: CheckArgs, json: bool) -> anyhow::Result<ExitCode> {
    let prepared = start::prepare(
        &store,
        args.job_file.as_deref(),
        Some(&args.from),
        &args.mapping.into(),
        None,
    )?;
    tokio_runtime()?.block_on(start::check_job(store, prepared, json))
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

/// Reads `--config K=V`.
fn parse_config(text: &str) -> Result<(String, String), String> {
    let (key, value) = text.split_once('=').ok_or("expected K=V")?;
    Ok((key.to_owned(), value.to_owned()))
}

fn save(store: &Store, job: &JobId, stop: bool) -> anyhow::Result<ExitCode> {
    let saved = progress::spinning(&format!("saving {job}"), || jobs::save(store, job, stop))?;
    println!("{}", saved.id);
    println!("{}", store.display(&saved.path));
    Ok(ExitCode::SUCCESS)
}

/// `host upgrade`: asks the running job to swap the module, then prints the pause it caused.
fn upgrade(store: &Store, args: UpgradeArgs) -> anyhow::Result<ExitCode> {
    let job = args.job.clone();
    let spec = args.spec()?;
    let operator = spec.operator.clone();
    let doing = format!("upgrading operator `{operator}` of {job}");
    let upgraded = progress::spinning(&doing, || jobs::upgrade(store, &job, spec))?;
    println!(
        "upgraded operator `{operator}` to {} {} at checkpoint {}",
        upgraded.module_name, upgraded.module_version, upgraded.checkpoint
    );
    match upgraded.staged_from {
        Some(staged) => println!(
            "restored beside the running module from checkpoint {staged}, then caught up on \
             what changed at {} checkpoint{}",
            upgraded.catch_up_rounds,
            if upgraded.catch_up_rounds == 1 {
                ""
            } else {
                "s"
            }
        ),
        None => println!(
            "restored at that checkpoint while the operator waited (the module does not export \
             `catch-up`)"
        ),
    }
    match upgraded.pause_us {
        Some(us) => println!("pause: {:.1} ms", us as f64 / 1e3),
        None => println!("pause: none (no record reached the new module in the canary window)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn cancel(store: &Store, job: &JobId) -> anyhow::Result<ExitCode> {
    jobs::cancel(store, job)?;
    println!("stopped {job}");
    Ok(ExitCode::SUCCESS)
}

fn list_jobs(store: &Store, json: bool) -> anyhow::Result<ExitCode> {
    let rows = jobs::list(store)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for row in rows {
            let state = terminal::escaped(&row.state);
            println!("{}\t{}\t{}", row.job, row.name, state);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list_points(store: &Store, job: Option<&JobId>, json: bool) -> anyhow::Result<ExitCode> {
    let rows = jobs::points(store, job)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    for row in rows {
        let kind = row
            .savepoint
            .as_ref()
            .map_or("checkpoint".to_owned(), |id| format!("savepoint {id}"));
        match (&row.job, row.checkpoint, &row.error) {
            (Some(job), Some(checkpoint), _) => println!(
                "{kind}\t{job}:{}\t{} bytes\t{}",
                checkpoint,
                row.state_bytes.unwrap_or(0),
                row.path.display()
            ),
            (_, _, error) => println!(
                "{kind}\tunreadable: {}\t{}",
                error.as_deref().unwrap_or_default(),
                row.path.display()
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `host serve`: prints the dashboard's address with the token (`--token-file`'s, or the state
/// folder's, generated on the first start), then serves until interrupted.
fn serve(
    store: Store,
    listen: std::net::SocketAddr,
    token_file: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    let given = token_file.map(host::serve::token::read).transpose()?;
    tokio_runtime()?.block_on(async {
        let listener = host::serve::bind(listen, given.is_some()).await?;
        let token = match given {
            Some(token) => token,
            None => host::serve::token::load_or_create(store.layout())?,
        };
        let url = host::serve::dashboard::url(listener.local_addr()?, &token);
        println!("listening on {url}");
        std::io::Write::flush(&mut std::io::stdout())?;
        tokio::select! {
            served = host::serve::run(listener, store, token, shadow::runner()) => served?,
            _ = tokio::signal::ctrl_c() => {}
        }
        Ok(ExitCode::SUCCESS)
    })
}
