//! `host run --workers N` and `host worker`: the command line's side of [`host::cluster`]:
//! the cluster's token (generated here, handed to workers through their environment), the
//! workers started and joined before the job is built, and stopped once it ended.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use host::cluster::remote::Pool;
use host::cluster::scheduler::Scheduler;
use host::cluster::scheduler::process::{Processes, TOKEN_VARIABLE};
use host::cluster::worker::{self, WorkerConfig};
use host::engine::CacheMode;
use host::runtime::remote::Remote;
use host::store::Store;

/// `host worker`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct WorkerArgs {
    /// The coordinator to join (`host run --workers`' listener).
    #[arg(long, value_name = "ADDR")]
    coordinator: SocketAddr,
    /// Its name in logs and errors [default: worker-PID].
    #[arg(long)]
    name: Option<String>,
    /// Where its exchange listens for the other workers.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
}

/// The workers of one `host run`, joined.
pub(super) struct Cluster {
    pool: Pool,
    scheduler: Processes,
}

impl Cluster {
    /// Starts `workers` `host worker` processes on this machine, with `args` (the state
    /// folder, the store) before `worker`, and waits until each joined; refuses if one ends
    /// first.
    pub(super) async fn start(
        store: &Store,
        workers: usize,
        args: Vec<OsString>,
    ) -> anyhow::Result<Cluster> {
        anyhow::ensure!(workers > 0, "--workers must be at least 1");
        let token = hex::encode(rand::random::<[u8; 32]>());
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let pool = Pool::listen(loopback, &token, store.layout().clone()).await?;
        let exe =
            std::env::current_exe().context("cannot find the host program to start workers")?;
        let mut scheduler = Processes::new(exe, args, workers);
        scheduler.start(pool.addr(), &token)?;
        tokio::select! {
            () = pool.joined(workers) => {}
            ended = scheduler.ended() => {
                scheduler.stop().await;
                anyhow::bail!("a worker ended before it joined: {ended}");
            }
        }
        tracing::info!(workers, coordinator = %pool.addr(), "workers joined");
        Ok(Cluster { pool, scheduler })
    }

    /// Where the job's subtasks go.
    pub(super) fn remote(&self) -> Arc<dyn Remote> {
        Arc::new(self.pool.clone())
    }

    /// Stops the workers.
    pub(super) async fn stop(mut self) {
        self.scheduler.stop().await;
    }
}

/// The arguments every worker gets before `worker`: this state folder (absolute) and object
/// store.
pub(super) fn worker_args(home: &Path, store: Option<&str>) -> Vec<OsString> {
    let home = std::path::absolute(home).unwrap_or_else(|_| home.to_owned());
    let mut args = vec![OsString::from("--home"), home.into_os_string()];
    if let Some(url) = store {
        args.extend([OsString::from("--store"), OsString::from(url)]);
    }
    args
}

/// `host worker`: joins the coordinator and runs what it deploys until it goes away.
pub(super) fn run_worker(store: Store, args: WorkerArgs) -> anyhow::Result<ExitCode> {
    let token = std::env::var(TOKEN_VARIABLE)
        .with_context(|| format!("a worker needs the cluster's token in {TOKEN_VARIABLE}"))?;
    let name = args
        .name
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let config = WorkerConfig {
        coordinator: args.coordinator,
        token,
        name: format!("{name} (pid {})", std::process::id()),
        listen: args.listen,
    };
    let engine = super::start::engine(&store, CacheMode::ReadWrite)?;
    super::tokio_runtime()?.block_on(worker::run(store, engine, config))?;
    Ok(ExitCode::SUCCESS)
}
