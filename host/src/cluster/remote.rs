//! The coordinator's side: the workers connected to it ([`Pool`]), and deploying a job on
//! them ([`crate::runtime::remote::Remote`]): placed, built everywhere, then started; commands
//! out and events in, each tagged with the deployment's generation.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinSet;

use super::placement::place;
use super::wire::{self, Deployment, FromWorker, Hello, RemoteCommand, RemoteEvent, ToWorker};
use crate::ids::SubtaskId;
use crate::runtime::channel::Closed;
use crate::runtime::remote::{Deploy, Deployed, Remote, Session};
use crate::runtime::subtask::{Command, Event, SubtaskError};
use crate::runtime::{BuildCause, BuildError, CheckpointFailure, OperatorInfo, RemoteFailure};
use crate::store::Layout;

/// What a worker's connection delivers.
enum Inbound {
    /// A message.
    Message(FromWorker),
    /// The connection closed: the worker is gone.
    Lost,
}

/// A connected worker.
#[derive(Clone)]
struct Worker {
    name: String,
    exchange: SocketAddr,
    to: mpsc::UnboundedSender<ToWorker>,
    alive: bool,
}

struct Shared {
    token: String,
    /// Every worker that ever connected, by id (its index).
    workers: Mutex<Vec<Worker>>,
    /// What the workers say, by worker id; one reader at a time (a deployment being built,
    /// started or stopped).
    inbox: tokio::sync::Mutex<mpsc::UnboundedReceiver<(usize, Inbound)>>,
    inbox_tx: mpsc::UnboundedSender<(usize, Inbound)>,
    /// Rung when a worker connects.
    joined: Notify,
    generation: AtomicU64,
    /// The state folder's layout: points are named to workers relative to it.
    layout: Layout,
}

/// The workers of one `host run`: they connect to its listener.
#[derive(Clone)]
pub struct Pool {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Why the pool could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Its listener could not be bound.
    #[error("cannot listen for workers on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl Pool {
    /// Listens on `addr` for workers presenting `token`; points are named to them relative to
    /// `layout`'s state folder.
    pub async fn listen(addr: SocketAddr, token: &str, layout: Layout) -> Result<Pool, PoolError> {
        let listen = |source| PoolError::Listen { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(listen)?;
        let addr = listener.local_addr().map_err(listen)?;
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            workers: Mutex::default(),
            inbox: tokio::sync::Mutex::new(inbox),
            inbox_tx,
            joined: Notify::new(),
            generation: AtomicU64::new(0),
            layout,
        });
        let accepting = shared.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(accepting.clone().admit(stream));
            }
        });
        Ok(Pool { addr, shared })
    }

    /// Where workers connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How many workers are connected now.
    pub fn alive(&self) -> usize {
        let workers = self.shared.workers.lock().expect("not poisoned");
        workers.iter().filter(|w| w.alive).count()
    }

    /// Waits until `n` workers are connected.
    pub async fn joined(&self, n: usize) {
        loop {
            let joined = self.shared.joined.notified();
            if self.alive() >= n {
                return;
            }
            joined.await;
        }
    }
}

impl Shared {
    /// A worker's connection: its hello checked, then its messages into the inbox until it
    /// closes.
    async fn admit(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut read = tokio::io::BufReader::new(read);
        let hello = match wire::read::<_, Hello>(&mut read).await {
            Ok(Some(hello)) if wire::same_token(&hello.token, &self.token) => hello,
            Ok(_) => return tracing::warn!("a worker connection without the token refused"),
            Err(e) => return tracing::warn!("a worker connection refused: {e}"),
        };
        let (to, mut outgoing) = mpsc::unbounded_channel::<ToWorker>();
        let id = {
            let mut workers = self.workers.lock().expect("not poisoned");
            workers.push(Worker {
                name: hello.name.clone(),
                exchange: hello.exchange,
                to,
                alive: true,
            });
            workers.len() - 1
        };
        tracing::info!(worker = %hello.name, exchange = %hello.exchange, "worker joined");
        self.joined.notify_waiters();
        tokio::spawn(async move {
            while let Some(message) = outgoing.recv().await {
                if wire::write(&mut write, &message).await.is_err() {
                    break;
                }
            }
        });
        loop {
            match wire::read::<_, FromWorker>(&mut read).await {
                Ok(Some(message)) => drop(self.inbox_tx.send((id, Inbound::Message(message)))),
                end => {
                    if let Err(e) = end {
                        tracing::warn!(worker = %hello.name, "{e}");
                    }
                    break;
                }
            }
        }
        self.workers.lock().expect("not poisoned")[id].alive = false;
        tracing::warn!(worker = %hello.name, "worker gone");
        let _ = self.inbox_tx.send((id, Inbound::Lost));
    }

    fn worker(&self, id: usize) -> Worker {
        self.workers.lock().expect("not poisoned")[id].clone()
    }
}

/// A build error of the whole job (no worker to run it, or one lost while building), named
/// after each operator as build errors are.
fn everywhere(plan: &crate::topology::Plan, worker: &str, message: &str) -> Vec<BuildError> {
    let failure = RemoteFailure {
        worker: worker.to_owned(),
        message: message.to_owned(),
    };
    let cause = || BuildCause::Remote(failure.clone());
    let errors = plan.operators.iter().map(|op| BuildError {
        operator: op.id.clone(),
        subtask: None,
        cause: cause(),
    });
    errors.collect()
}

impl Remote for Pool {
    fn deploy<'a>(
        &'a self,
        deploy: Deploy<'a>,
    ) -> BoxFuture<'a, Result<Deployed, Vec<BuildError>>> {
        Box::pin(self.deploy_now(deploy))
    }
}

impl Pool {
    async fn deploy_now(&self, deploy: Deploy<'_>) -> Result<Deployed, Vec<BuildError>> {
        let shared = &self.shared;
        let generation = shared.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let workers: Vec<(usize, Worker)> = {
            let workers = shared.workers.lock().expect("not poisoned");
            let alive = workers.iter().enumerate().filter(|(_, w)| w.alive);
            alive.map(|(id, w)| (id, w.clone())).collect()
        };
        if workers.is_empty() {
            let plan = deploy.plan;
            return Err(everywhere(plan, "the pool", "no worker is connected"));
        }
        let deployed = send_deployments(&deploy, generation, &workers);
        let operators = self.built(generation, &deployed, deploy.plan).await?;
        let mut session = Remoting {
            job: deploy.job.clone(),
            generation,
            shared: shared.clone(),
            workers: deployed
                .iter()
                .map(|(&id, (w, _))| (id, w.clone()))
                .collect(),
            events: deploy.events,
            tasks: JoinSet::new(),
        };
        let mut commands = BTreeMap::new();
        for (worker, subtasks) in deployed.values() {
            for subtask in subtasks {
                let (tx, rx) = mpsc::unbounded_channel();
                commands.insert(subtask.clone(), tx);
                let forward = forward(rx, worker.to.clone(), generation, subtask.clone());
                session.tasks.spawn(forward);
            }
        }
        Ok(Deployed {
            operators,
            commands,
            session: Box::new(session),
        })
    }

    /// Waits until every worker of `deployed` built its share of `generation`; the operators'
    /// records, in plan order, merged from what the workers say.
    async fn built(
        &self,
        generation: u64,
        deployed: &BTreeMap<usize, (Worker, Vec<SubtaskId>)>,
        plan: &crate::topology::Plan,
    ) -> Result<Vec<OperatorInfo>, Vec<BuildError>> {
        let mut inbox = self.shared.inbox.lock().await;
        let mut waiting: BTreeSet<usize> = deployed.keys().copied().collect();
        let (mut described, mut errors) = (BTreeMap::new(), Vec::new());
        while !waiting.is_empty() {
            let Some((id, inbound)) = inbox.recv().await else {
                unreachable!("the pool holds the inbox's sender")
            };
            let name = self.shared.worker(id).name;
            match inbound {
                Inbound::Lost if waiting.contains(&id) => {
                    return Err(everywhere(plan, &name, "gone while building"));
                }
                Inbound::Message(FromWorker::Built {
                    generation: g,
                    operators,
                }) if g == generation => {
                    waiting.remove(&id);
                    for op in operators {
                        described.entry(op.id.clone()).or_insert(op);
                    }
                }
                Inbound::Message(FromWorker::BuildFailed {
                    generation: g,
                    errors: e,
                }) if g == generation => {
                    waiting.remove(&id);
                    errors.extend(
                        e.into_iter()
                            .map(|(operator, subtask, message)| BuildError {
                                operator,
                                subtask,
                                cause: BuildCause::Remote(RemoteFailure {
                                    worker: name.clone(),
                                    message,
                                }),
                            }),
                    );
                }
                // Late words of an earlier generation, or of a worker not deployed.
                _ => {}
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let infos = plan
            .operators
            .iter()
            .map(|op| described.remove(&op.id).expect("every operator placed"));
        Ok(infos.collect())
    }
}

/// Places `deploy`'s subtasks on `workers` (id, worker) and sends each worker with a share its
/// deployment of `generation`; returns who got what, by worker id.
fn send_deployments(
    deploy: &Deploy<'_>,
    generation: u64,
    workers: &[(usize, Worker)],
) -> BTreeMap<usize, (Worker, Vec<SubtaskId>)> {
    let placement = place(deploy.plan, workers.len());
    let exchanges: Vec<(SubtaskId, SocketAddr)> = placement
        .iter()
        .map(|(subtask, &w)| (subtask.clone(), workers[w].1.exchange))
        .collect();
    let mut deployed = BTreeMap::new();
    for (w, (id, worker)) in workers.iter().enumerate() {
        let here = placement.iter().filter(|&(_, &at)| at == w);
        let subtasks: Vec<SubtaskId> = here.map(|(s, _)| s.clone()).collect();
        if subtasks.is_empty() {
            continue;
        }
        tracing::info!(worker = %worker.name, generation, subtasks = subtasks.len(), "deploying");
        let deployment = Deployment {
            job: deploy.job.clone(),
            generation,
            job_file: deploy.record.job_file.clone(),
            base_dir: deploy.record.definition.base_dir.clone().into(),
            point: deploy.point.cloned(),
            subtasks: subtasks.clone(),
            exchanges: exchanges.clone(),
            memory_bytes_max: deploy.limits.memory_bytes_max as u64,
            call_ms_max: deploy.limits.call_ms_max,
        };
        let _ = worker.to.send(ToWorker::Deploy(Box::new(deployment)));
        deployed.insert(*id, (worker.clone(), subtasks));
    }
    deployed
}

/// Forwards the coordinator's commands to one subtask to its worker.
async fn forward(
    mut commands: mpsc::UnboundedReceiver<Command>,
    to: mpsc::UnboundedSender<ToWorker>,
    generation: u64,
    subtask: SubtaskId,
) {
    while let Some(command) = commands.recv().await {
        let command = match command {
            Command::Trigger(barrier) => RemoteCommand::Trigger(barrier),
            Command::Commit(checkpoint) => RemoteCommand::Commit(checkpoint),
            Command::Swap(_) => unreachable!("jobs on workers are not swapped live"),
        };
        let subtask = subtask.clone();
        let message = ToWorker::Command {
            generation,
            subtask,
            command,
        };
        if to.send(message).is_err() {
            return;
        }
    }
}

/// One deployment on workers, as the coordinator drives it.
struct Remoting {
    job: crate::ids::JobId,
    generation: u64,
    shared: Arc<Shared>,
    /// The workers it runs on, by id.
    workers: BTreeMap<usize, Worker>,
    events: mpsc::UnboundedSender<Event>,
    /// The command forwarders and, once started, the event router.
    tasks: JoinSet<()>,
}

impl Session for Remoting {
    fn start(&mut self) {
        for worker in self.workers.values() {
            let _ = worker.to.send(ToWorker::Start(self.generation));
        }
        let (shared, events) = (self.shared.clone(), self.events.clone());
        let (generation, workers) = (self.generation, self.workers.clone());
        self.tasks.spawn(route(shared, events, generation, workers));
    }

    fn published(&self, location: &Path) {
        let layout = &self.shared.layout;
        let location = layout.relative(location).unwrap_or(location.to_owned());
        for worker in self.workers.values() {
            let job = self.job.clone();
            let location = location.clone();
            let _ = worker.to.send(ToWorker::Published { job, location });
        }
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.tasks.shutdown().await;
            let mut waiting: BTreeSet<usize> = BTreeSet::new();
            for (&id, worker) in &self.workers {
                if worker.to.send(ToWorker::Cancel(self.generation)).is_ok()
                    && self.shared.worker(id).alive
                {
                    waiting.insert(id);
                }
            }
            let mut inbox = self.shared.inbox.lock().await;
            while !waiting.is_empty() {
                match inbox.recv().await {
                    Some((id, Inbound::Lost)) => drop(waiting.remove(&id)),
                    Some((id, Inbound::Message(FromWorker::Cancelled(g))))
                        if g == self.generation =>
                    {
                        waiting.remove(&id);
                    }
                    Some(_) => {}
                    None => unreachable!("the pool holds the inbox's sender"),
                }
            }
        })
    }
}

/// Routes what the workers of `generation` say to the coordinator, as the runtime's events;
/// a lost worker is a failed subtask.
async fn route(
    shared: Arc<Shared>,
    events: mpsc::UnboundedSender<Event>,
    generation: u64,
    workers: BTreeMap<usize, Worker>,
) {
    let mut inbox = shared.inbox.lock().await;
    while let Some((id, inbound)) = inbox.recv().await {
        let Some(worker) = workers.get(&id) else {
            continue;
        };
        let event = match inbound {
            Inbound::Lost => Event::Failed(SubtaskError::WorkerLost {
                worker: worker.name.clone(),
            }),
            Inbound::Message(FromWorker::Event {
                generation: g,
                event,
            }) if g == generation => into_event(&worker.name, event),
            Inbound::Message(_) => continue,
        };
        if events.send(event).is_err() {
            return;
        }
    }
}

/// A worker's event as the runtime's.
fn into_event(worker: &str, event: RemoteEvent) -> Event {
    let failure = |message| RemoteFailure {
        worker: worker.to_owned(),
        message,
    };
    match event {
        RemoteEvent::Acked(ack) => Event::Acked(ack),
        RemoteEvent::SnapshotFailed {
            checkpoint,
            message,
        } => Event::SnapshotFailed {
            checkpoint,
            error: CheckpointFailure::Remote(failure(message)),
        },
        RemoteEvent::SourceExhausted => Event::SourceExhausted,
        RemoteEvent::Done(subtask) => Event::Done(subtask),
        RemoteEvent::Failed { message, .. } => {
            Event::Failed(SubtaskError::Remote(failure(message)))
        }
        RemoteEvent::PeerGone(subtask) => Event::PeerGone(subtask, Closed),
    }
}
