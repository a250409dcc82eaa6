//! `host run`: a prepared job built, admitted ([`super::admit`]) and run in the foreground until
//! it ends, its control socket served, its final status written.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use host::admission;
use host::control;
use host::engine::CacheMode;
use host::ids::JobId;
use host::runtime::remote::Remote;
use host::runtime::{self, Outcome};
use host::store::{JobState, JobStatus, Store};

use super::admit::{Admitting, admit, refuse};
use super::prepare::Prepared;
use super::{build, engine};

/// Starts the job and runs it in the foreground until it ends. Prepared and built a second
/// time if taking over the point's job on an object store shows that it published a newer
/// point meanwhile (see `take_over_point_job`). With `log_file` (`--detach`), that file
/// becomes the job's log once the job has an id.
/// With `workers` (how many, where, and their arguments), the subtasks run on `host worker`
/// processes (or Pods), started first and stopped once the job ended.
pub(in crate::cli) async fn run_job(
    store: Store,
    prepared: Prepared,
    log_file: Option<PathBuf>,
    workers: Option<(
        crate::cli::cluster::ClusterArgs,
        crate::cli::cluster::WorkerArgsOf,
    )>,
) -> anyhow::Result<ExitCode> {
    let Some((asked, args)) = workers else {
        return run_here_or_there(store, prepared, log_file, None).await;
    };
    let cluster = crate::cli::cluster::Cluster::start(&store, asked, args).await?;
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
            crate::cli::detach::claim_log(&store, log_file, &status.job)?;
        }
        // The job really starts: from here on, it may change files.
        engine.write_cache();
        return run_admitted(store, job, status).await;
    }
    unreachable!("the second attempt is admitted or refused")
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
            let shown = crate::cli::terminal::escaped(&error);
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
