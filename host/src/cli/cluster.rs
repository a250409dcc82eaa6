//! `host run --workers N [--scheduler kubernetes ...]` and `host worker`: the command line's
//! side of [`host::cluster`]: the cluster's token (generated here, handed to workers through
//! their environment or a Secret), the workers started and joined before the job is built,
//! and stopped once it ended.

use std::ffi::OsString;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;

use host::cluster::remote::Pool;
use host::cluster::scheduler::Scheduler;
use host::cluster::scheduler::kubernetes::{KubernetesConfig, Pods};
use host::cluster::scheduler::process::{Processes, TOKEN_VARIABLE};
use host::cluster::wire::Heartbeat;
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
    /// The address the other workers reach its exchange at [default: the one it listens on].
    #[arg(long, value_name = "IP")]
    advertise: Option<std::net::IpAddr>,
}

/// How a job's workers come to be: `host run`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct ClusterArgs {
    /// Run the job's subtasks on N `host worker` processes, started and watched by this one
    /// (which coordinates); without it, every subtask runs here.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// How the workers are started: processes on this machine, or Pods (through the
    /// Kubernetes API server this process's service account or kubeconfig reaches).
    #[arg(long, value_enum, default_value = "process", requires = "workers")]
    scheduler: SchedulerKind,
    /// kubernetes: the container image holding `host`.
    #[arg(long, required_if_eq("scheduler", "kubernetes"))]
    image: Option<String>,
    /// kubernetes: the namespace of the workers' Pods and Secret.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// kubernetes: a Secret whose every key goes into the workers' environment (the object
    /// store's `AWS_*`).
    #[arg(long, value_name = "NAME")]
    env_secret: Option<String>,
    /// kubernetes: the IP the workers reach this process at (its Pod's IP).
    #[arg(long, value_name = "IP", required_if_eq("scheduler", "kubernetes"))]
    advertise: Option<IpAddr>,
    /// kubernetes: the port the workers reach this process at.
    #[arg(long, value_name = "PORT", default_value_t = 7070)]
    coordinator_port: u16,
    /// kubernetes: the port each worker's exchange listens on.
    #[arg(long, value_name = "PORT", default_value_t = 7000)]
    exchange_port: u16,
    /// How long a worker may say nothing before it is taken for lost and the job restarts
    /// without it, in milliseconds (a stopped or cut-off worker keeps its connections open;
    /// it pings four times per timeout, and fences itself off before the timeout ends).
    #[arg(
        long,
        value_name = "MS",
        default_value_t = 10_000,
        value_parser = clap::value_parser!(u64).range(40..),
        requires = "workers"
    )]
    heartbeat_timeout_ms: u64,
}

/// The schedulers `--scheduler` names.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SchedulerKind {
    /// `host worker` processes on this machine.
    Process,
    /// Pods.
    Kubernetes,
}

impl ClusterArgs {
    /// Whether the job runs on workers.
    pub(super) fn wanted(&self) -> bool {
        self.workers.is_some()
    }
}

/// What a worker started for a job gets before `worker`: the state folder and object store
/// of its coordinator.
pub(super) struct WorkerArgsOf {
    /// The state folder.
    pub(super) home: PathBuf,
    /// The object store's URL, if any.
    pub(super) store: Option<String>,
}

/// The workers of one `host run`, joined.
pub(super) struct Cluster {
    pool: Pool,
    scheduler: Box<dyn Scheduler>,
}

impl Cluster {
    /// Starts the workers `asked` says, and waits until each joined; refuses if one ends
    /// first.
    pub(super) async fn start(
        store: &Store,
        asked: ClusterArgs,
        of: WorkerArgsOf,
    ) -> anyhow::Result<Cluster> {
        let workers = usize::from(asked.workers.unwrap_or(1));
        let token = hex::encode(rand::random::<[u8; 32]>());
        let (mut scheduler, listen) = scheduler(&asked, of, workers).await?;
        let heartbeat = Heartbeat {
            timeout: std::time::Duration::from_millis(asked.heartbeat_timeout_ms),
        };
        let pool = Pool::listen(listen, &token, store.layout().clone(), heartbeat).await?;
        let mut reached = pool.addr();
        if let Some(ip) = asked.advertise {
            reached.set_ip(ip);
        }
        scheduler.start(reached, &token).await?;
        tokio::select! {
            () = pool.joined(workers) => {}
            ended = scheduler.ended() => {
                scheduler.stop().await;
                anyhow::bail!("a worker ended before it joined: {ended}");
            }
        }
        tracing::info!(workers, coordinator = %reached, "workers joined");
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

/// The scheduler `asked` names, and where the coordinator listens for its workers.
async fn scheduler(
    asked: &ClusterArgs,
    of: WorkerArgsOf,
    workers: usize,
) -> anyhow::Result<(Box<dyn Scheduler>, SocketAddr)> {
    match asked.scheduler {
        SchedulerKind::Process => {
            let exe =
                std::env::current_exe().context("cannot find the host program to start workers")?;
            let args = worker_args(&of.home, of.store.as_deref());
            let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
            Ok((Box::new(Processes::new(exe, args, workers)), loopback))
        }
        SchedulerKind::Kubernetes => {
            let url = of.store;
            let url = url.context(
                "the kubernetes scheduler needs --store s3://...: a Pod shares no state folder \
                 with this process",
            )?;
            let client = kube::Client::try_default()
                .await
                .context("cannot reach the Kubernetes API server")?;
            let config = KubernetesConfig {
                run: format!("jobhost-{}", hex::encode(rand::random::<[u8; 4]>())),
                namespace: asked.namespace.clone(),
                image: asked.image.clone().expect("clap requires it"),
                args: vec!["--store".to_owned(), url],
                env_secret: asked.env_secret.clone(),
                exchange_port: asked.exchange_port,
            };
            let listen = SocketAddr::from(([0, 0, 0, 0], asked.coordinator_port));
            Ok((Box::new(Pods::new(client, config, workers)), listen))
        }
    }
}

/// The arguments every worker process gets before `worker`: this state folder (absolute)
/// and object store.
fn worker_args(home: &Path, store: Option<&str>) -> Vec<OsString> {
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
        advertise: args.advertise,
        env: Arc::new(|name| std::env::var(name).ok()),
    };
    let engine = super::start::engine(&store, CacheMode::ReadWrite)?;
    super::tokio_runtime()?.block_on(worker::run(store, engine, config))?;
    Ok(ExitCode::SUCCESS)
}
