//! `host worker`: runs the subtasks a coordinator deploys on it.
//!
//! It listens for the exchange, connects to the coordinator and says hello; then, for each
//! deployment: builds its share ([`crate::runtime::build_share`], the point read from the
//! shared store here), opens its inbound links, says `built`; on `start`, spawns its subtasks
//! and outbound links; relays commands in and events out; on `cancel`, stops them all. When
//! the coordinator's connection closes, it stops everything and returns: no subtask of a job
//! whose coordinator is gone runs on, and no sink commits without it.
//!
//! It pings its coordinator every beat and holds a lease renewed by each answer
//! ([`crate::runtime::lease`]): its subtasks check the lease before every act on the outside
//! world, and the worker itself stops everything and returns [`WorkerError::Fenced`] as soon
//! as it finds the lease ended (a worker that was stopped, or cut off, for longer than its
//! coordinator waits: a new generation may run in its place).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::JoinSet;

use self::link::{Joined, Pings, Said, join, ping, read_in, send_out};
use super::exchange::{self, Exchange, LinkHello};
use super::wire::{self, Deployment, FromWorker, RemoteCommand, RemoteEvent, ToWorker};
use crate::connectors::secret::{self, Secrets};
use crate::engine::{Engine, Limits};
use crate::ids::SubtaskId;
use crate::points::savepoint::{self, Mapping};
use crate::protected::Protected;
use crate::runtime::coordinator::{Commands, spawn_subtasks};
use crate::runtime::lease::{Lease, LeaseExpired};
use crate::runtime::subtask::{Command, Event};
use crate::runtime::{ChannelId, JobRecord, RestoreFrom, Share, ShareSpec, build_share};
use crate::store::Store;
use crate::topology::Plan;

/// How a worker is reached and what it presents.
pub struct WorkerConfig {
    /// The coordinator's address.
    pub coordinator: SocketAddr,
    /// The cluster's secret.
    pub token: String,
    /// Its name in logs and errors.
    pub name: String,
    /// Where its exchange listens (port 0: any).
    pub listen: SocketAddr,
    /// The address the other workers reach its exchange at, if not the one it listens on
    /// (a Pod listening on 0.0.0.0 says its own IP).
    pub advertise: Option<std::net::IpAddr>,
    /// Its environment, as the binary reads it: where the connectors' secrets are read from
    /// (each worker reads them itself; they never cross the wire).
    pub env: Env,
}

/// A process's environment variables, read by the binary.
pub type Env = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Why a worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// Its exchange could not listen.
    #[error("cannot listen for the exchange on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The coordinator could not be reached or spoke nonsense.
    #[error("coordinator {addr}: {source}")]
    Coordinator {
        /// Its address.
        addr: SocketAddr,
        /// Why.
        source: wire::WireError,
    },
    /// The coordinator went away while subtasks of generation `generation` ran: they were
    /// stopped.
    #[error("the coordinator is gone: stopped the subtasks of generation {generation}")]
    CoordinatorLost {
        /// The generation that was running.
        generation: u64,
    },
    /// Its lease ended (it was stopped or cut off for longer than its coordinator waits):
    /// it stopped whatever ran, and ends.
    #[error("{expired}: stopped {}", .generation.map_or("nothing (none ran)".to_owned(), |g| format!("the subtasks of generation {g}")))]
    Fenced {
        /// The generation that was running, if one.
        generation: Option<u64>,
        /// The lease.
        expired: LeaseExpired,
    },
}

/// A deployment on this worker: built (and, once started, running).
struct Current {
    generation: u64,
    deployment: Deployment,
    plan: Plan,
    /// Until started.
    share: Option<Share>,
    commands: Commands,
    /// Its inbound links, then its subtasks and outbound links.
    tasks: JoinSet<()>,
}

/// Reports a failure that is not a subtask's (a link's, a panic).
type Failed = Arc<dyn Fn(String) + Send + Sync>;

/// What a worker holds across deployments.
struct Worker {
    env: Env,
    store: Store,
    engine: Arc<Engine>,
    exchange: Exchange,
    token: String,
    /// Messages to the coordinator.
    out: mpsc::UnboundedSender<FromWorker>,
    current: Option<Current>,
    /// Renewed by the coordinator's answers to pings; checked before every act.
    lease: Lease,
}

/// Runs a worker until its coordinator goes away (`Ok` if nothing was running then), or its
/// lease ends.
pub async fn run(
    store: Store,
    engine: Arc<Engine>,
    config: WorkerConfig,
) -> Result<(), WorkerError> {
    let listen = |source| WorkerError::Listen {
        addr: config.listen,
        source,
    };
    let exchange = Exchange::bind(config.listen, &config.token)
        .await
        .map_err(listen)?;
    let mut reached = exchange.addr();
    if let Some(ip) = config.advertise {
        reached.set_ip(ip);
    }
    let joined = join(&config, reached).await;
    let Joined {
        read,
        write,
        welcome,
        lease,
    } = joined.map_err(|source| WorkerError::Coordinator {
        addr: config.coordinator,
        source,
    })?;
    tracing::info!(name = %config.name, exchange = %reached, "worker ready");
    let (out, outgoing) = mpsc::unbounded_channel::<FromWorker>();
    tokio::spawn(send_out(write, outgoing));
    let pings = Pings::default();
    tokio::spawn(ping(out.clone(), pings.clone(), welcome.ping_ms));
    let (said_tx, said) = mpsc::unbounded_channel();
    tokio::spawn(read_in(read, said_tx, lease.clone(), pings));
    let mut worker = Worker {
        env: config.env,
        store,
        engine,
        exchange,
        token: config.token,
        out,
        current: None,
        lease,
    };
    worker.serve(said).await
}

impl Worker {
    /// Serves what the coordinator `said` until its connection ends or the lease does; the
    /// lease is checked first whenever the worker wakes.
    async fn serve(&mut self, mut said: mpsc::UnboundedReceiver<Said>) -> Result<(), WorkerError> {
        loop {
            let until = tokio::time::Instant::from_std(self.lease.until());
            let next = tokio::select! {
                biased;
                () = tokio::time::sleep_until(until) => None,
                next = said.recv() => Some(next),
            };
            if let Err(expired) = self.lease.check() {
                return self.fenced(expired).await;
            }
            match next {
                None => {}
                Some(Some(Ok(Some(message)))) => self.on_message(message).await,
                Some(ended) => {
                    if let Some(Err(e)) = ended {
                        tracing::warn!("coordinator: {e}");
                    }
                    return self.coordinator_lost().await;
                }
            }
        }
    }

    /// The lease ended: stops whatever runs, and says so.
    async fn fenced(&mut self, expired: LeaseExpired) -> Result<(), WorkerError> {
        let generation = self.current.as_ref().map(|c| c.generation);
        self.cancel().await;
        Err(WorkerError::Fenced {
            generation,
            expired,
        })
    }

    async fn on_message(&mut self, message: ToWorker) {
        match message {
            ToWorker::Deploy(deployment) => {
                self.cancel().await;
                self.deploy(*deployment).await;
            }
            ToWorker::Start(generation) => self.start(generation),
            ToWorker::Command {
                generation,
                subtask,
                command,
            } => {
                let current = self.current.as_ref().filter(|c| c.generation == generation);
                if let Some(commands) = current.and_then(|c| c.commands.get(&subtask)) {
                    let _ = commands.send(match command {
                        RemoteCommand::Trigger(barrier) => Command::Trigger(barrier),
                        RemoteCommand::Commit(checkpoint) => Command::Commit(checkpoint),
                    });
                }
            }
            ToWorker::Published { job, location } => {
                let location = self.located(&location);
                self.store.note_published(&job, &location);
            }
            // Read (and the lease renewed) as they arrive: none comes this way.
            ToWorker::Pong(_) => {}
            ToWorker::Cancel(generation) => {
                if self
                    .current
                    .as_ref()
                    .is_some_and(|c| c.generation <= generation)
                {
                    self.cancel().await;
                }
                self.exchange.forget(generation);
                let _ = self.out.send(FromWorker::Cancelled(generation));
            }
        }
    }

    /// A location as the coordinator names it, in this worker's state folder.
    fn located(&self, location: &Path) -> PathBuf {
        match location.is_relative() {
            true => self.store.layout().root().join(location),
            false => location.to_owned(),
        }
    }

    /// Stops the running deployment, if any: every subtask and link.
    async fn cancel(&mut self) {
        if let Some(mut current) = self.current.take() {
            current.tasks.shutdown().await;
            self.exchange.forget(current.generation);
            tracing::info!(generation = current.generation, "deployment stopped");
        }
    }

    async fn coordinator_lost(&mut self) -> Result<(), WorkerError> {
        let running = self.current.as_ref().map(|c| c.generation);
        self.cancel().await;
        match running {
            Some(generation) => Err(WorkerError::CoordinatorLost { generation }),
            None => Ok(()),
        }
    }

    /// Builds this worker's share of `deployment`, and opens its inbound links; answers
    /// `built` or why not.
    async fn deploy(&mut self, deployment: Deployment) {
        let generation = deployment.generation;
        let built = self.build(&deployment).await;
        let (plan, share) = match built {
            Ok(built) => built,
            Err(errors) => {
                let _ = self
                    .out
                    .send(FromWorker::BuildFailed { generation, errors });
                return;
            }
        };
        let mut tasks = JoinSet::new();
        let mut share = share;
        for (channel, tx) in std::mem::take(&mut share.inbound) {
            let connection = self.exchange.expect(generation, channel);
            let failed = self.failed(generation);
            let at = link(&plan, channel);
            tasks.spawn(async move {
                if let Err(e) = exchange::inbound(connection, &tx).await {
                    failed(format!("{at}, coming in: {e}"));
                    exchange::hold(tx).await;
                }
            });
        }
        let here: Vec<_> = deployment.subtasks.iter().map(|s| &s.operator).collect();
        let operators = share.operators.iter().filter(|op| here.contains(&&op.id));
        let operators = operators.cloned().collect();
        let _ = self.out.send(FromWorker::Built {
            generation,
            operators,
        });
        self.current = Some(Current {
            generation,
            commands: std::mem::take(&mut share.commands),
            deployment,
            plan,
            share: Some(share),
            tasks,
        });
    }

    /// Reports a failure of something of `generation` that is not a subtask (a link).
    fn failed(&self, generation: u64) -> Failed {
        let out = self.out.clone();
        Arc::new(move |message| {
            tracing::warn!("{message}");
            let event = RemoteEvent::Failed {
                subtask: None,
                message,
            };
            let _ = out.send(FromWorker::Event { generation, event });
        })
    }

    /// The plan and this worker's share of it, built and restored; or every problem, each
    /// naming its operator.
    async fn build(
        &self,
        deployment: &Deployment,
    ) -> Result<(Plan, Share), Vec<(crate::ids::OperatorId, Option<u32>, String)>> {
        let whole =
            |operator: crate::ids::OperatorId, message: String| vec![(operator, None, message)];
        let plan = Plan::from_toml(&deployment.job_file, &deployment.base_dir);
        let plan = plan.map_err(|e| whole("job".parse().expect("an id"), e.to_string()))?;
        let restore = match &deployment.point {
            None => None,
            Some(point) => {
                let (store, location) = (self.store.clone(), self.located(&point.location));
                let mapping = Mapping {
                    allow_non_restored: point.allow_non_restored,
                    renames: point.renames.clone(),
                };
                let checked = plan.clone();
                let read = tokio::task::spawn_blocking(move || {
                    savepoint::load_for(&store, &location, &checked, &mapping)
                });
                let read = read.await.expect("reading a point does not panic");
                let first = first_id(&plan);
                let (metadata, states) = read.map_err(|e| whole(first, e.to_string()))?;
                Some(RestoreFrom {
                    metadata,
                    states,
                    point: None,
                })
            }
        };
        let env = self.env.clone();
        let secrets = secret::resolve(&plan, |name| env(name)).map_err(|errors| {
            let errors = errors
                .iter()
                .map(|e| (first_id(&plan), None, e.to_string()));
            errors.collect::<Vec<_>>()
        })?;
        let spec = self.share_spec(deployment, &plan, (restore, secrets));
        let events = self.relay(deployment.generation);
        let share = build_share(self.engine.clone(), self.store.clone(), spec, events).await;
        let errors = |errors: Vec<crate::runtime::BuildError>| -> Vec<_> {
            let errors = errors.into_iter();
            errors
                .map(|e| (e.operator, e.subtask, e.cause.to_string()))
                .collect()
        };
        Ok((plan, share.map_err(errors)?))
    }

    fn share_spec(
        &self,
        deployment: &Deployment,
        plan: &Plan,
        (restore, secrets): (Option<RestoreFrom>, Secrets),
    ) -> ShareSpec {
        let layout = self.store.layout();
        let base = &deployment.base_dir;
        let modules = plan.operators.iter().filter_map(|op| op.module());
        ShareSpec {
            job: deployment.job.clone(),
            plan: plan.clone(),
            record: JobRecord::new(deployment.job_file.clone(), base, None),
            restore,
            limits: Limits {
                memory_bytes_max: deployment.memory_bytes_max as usize,
                call_ms_max: deployment.call_ms_max,
            },
            protected: Protected::new(layout.root(), &layout.cache(), Some(base))
                .with_modules(modules),
            secrets,
            here: deployment.subtasks.iter().cloned().collect(),
            lease: Some(self.lease.clone()),
        }
    }

    /// A channel for the events of `generation`'s subtasks, relayed to the coordinator.
    fn relay(&self, generation: u64) -> mpsc::UnboundedSender<Event> {
        let (events, mut relayed) = mpsc::unbounded_channel();
        let out = self.out.clone();
        tokio::spawn(async move {
            while let Some(event) = relayed.recv().await {
                let Some(event) = remote_event(event) else {
                    continue;
                };
                if out.send(FromWorker::Event { generation, event }).is_err() {
                    return;
                }
            }
        });
        events
    }

    /// Starts the subtasks and outbound links of `generation`, if it is the one built.
    fn start(&mut self, generation: u64) {
        let failed = self.failed(generation);
        let token = self.token.clone();
        let Some(current) = self.current.as_mut().filter(|c| c.generation == generation) else {
            return;
        };
        let Some(mut share) = current.share.take() else {
            return;
        };
        let exchanges: BTreeMap<&SubtaskId, SocketAddr> = current
            .deployment
            .exchanges
            .iter()
            .map(|(s, a)| (s, *a))
            .collect();
        for (channel, rx) in std::mem::take(&mut share.outbound) {
            let down = &current.plan.operators[current.plan.edges[channel.edge as usize].to];
            let to = SubtaskId {
                operator: down.id.clone(),
                index: channel.to,
            };
            let addr = exchanges[&to];
            let hello = LinkHello {
                token: token.clone(),
                generation,
                channel,
            };
            let failed = failed.clone();
            let at = link(&current.plan, channel);
            current.tasks.spawn(async move {
                if let Err(e) = exchange::outbound(addr, hello, rx).await {
                    failed(format!("{at}, going out to {addr}: {e}"));
                }
            });
        }
        let (mut subtasks, names) = spawn_subtasks(share.subtasks);
        current.tasks.spawn(async move {
            while let Some(joined) = subtasks.join_next_with_id().await {
                if let Err(e) = joined
                    && e.is_panic()
                {
                    let name = names.get(&e.id()).cloned().unwrap_or_default();
                    failed(format!("subtask {name} panicked"));
                }
            }
        });
        tracing::info!(generation, "deployment started");
    }
}

/// The first operator of `plan`, which a problem of the whole job is reported against.
fn first_id(plan: &Plan) -> crate::ids::OperatorId {
    plan.operators[0].id.clone()
}

/// A channel as a person reads it: `the channel from tokenize[2] to counter[1]`.
fn link(plan: &Plan, channel: ChannelId) -> String {
    let edge = &plan.edges[channel.edge as usize];
    let (up, down) = (&plan.operators[edge.from].id, &plan.operators[edge.to].id);
    let (from, to) = (channel.from, channel.to);
    format!("the channel from {up}[{from}] to {down}[{to}]")
}

/// A subtask's event as it crosses to the coordinator (`None`: one of a live swap, which
/// never happens on a worker).
fn remote_event(event: Event) -> Option<RemoteEvent> {
    Some(match event {
        Event::Acked(ack) => RemoteEvent::Acked(ack),
        Event::SnapshotFailed { checkpoint, error } => RemoteEvent::SnapshotFailed {
            checkpoint,
            message: error.to_string(),
        },
        Event::SourceExhausted => RemoteEvent::SourceExhausted,
        Event::Done(subtask) => RemoteEvent::Done(subtask),
        Event::Failed(error) => RemoteEvent::Failed {
            subtask: None,
            message: error.to_string(),
        },
        Event::PeerGone(subtask, _) => RemoteEvent::PeerGone(subtask),
        Event::Prepared(_)
        | Event::Staged { .. }
        | Event::Swapped { .. }
        | Event::Resumed { .. } => {
            return None;
        }
    })
}

mod link;
