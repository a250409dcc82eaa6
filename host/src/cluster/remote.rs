//! The coordinator's side: the workers connected to it ([`Pool`]), and deploying a job on
//! them ([`crate::runtime::remote::Remote`]): placed, built everywhere, then started; commands
//! out and events in, each tagged with the deployment's generation.
//!
//! A worker is lost when its connection closes, or when it says nothing (not even a ping)
//! within the pool's [`Heartbeat`] timeout: a stopped or partitioned process keeps its
//! connections open. The pool then closes its connection, so that a worker that comes back
//! finds its coordinator gone; by then the worker's lease has ended
//! ([`crate::runtime::lease`]), which fences off whatever its subtasks would still do.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinSet;

use super::placement::place;
use super::wire::{
    self, Deployment, FromWorker, Heartbeat, Hello, RemoteCommand, RemoteEvent, ToWorker,
};
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
    /// The worker is gone.
    Lost(Gone),
}

/// How a worker was lost.
#[derive(Clone, Copy, Debug)]
enum Gone {
    /// Its connection closed (or failed).
    Closed,
    /// It said nothing within the timeout: its connection was closed here.
    Silent,
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
    /// When a silent worker is taken for lost.
    heartbeat: Heartbeat,
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
    /// `layout`'s state folder; a worker silent for `heartbeat`'s timeout is lost.
    pub async fn listen(
        addr: SocketAddr,
        token: &str,
        layout: Layout,
        heartbeat: Heartbeat,
    ) -> Result<Pool, PoolError> {
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
            heartbeat,
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
    /// A worker's connection: its hello checked and welcomed, then its messages into the
    /// inbox until it closes or falls silent (then it is closed here).
    async fn admit(self: Arc<Self>, stream: TcpStream) {
        let _ = stream.set_nodelay(true);
        let (read, mut write) = stream.into_split();
        let mut read = tokio::io::BufReader::new(read);
        let hello = match wire::read::<_, Hello>(&mut read).await {
            Ok(Some(hello)) if wire::same_token(&hello.token, &self.token) => hello,
            Ok(_) => return tracing::warn!("a worker connection without the token refused"),
            Err(e) => return tracing::warn!("a worker connection refused: {e}"),
        };
        if let Err(e) = wire::write(&mut write, &self.heartbeat.welcome()).await {
            return tracing::warn!(worker = %hello.name, "{e}");
        }
        let (to, outgoing) = mpsc::unbounded_channel::<ToWorker>();
        let id = {
            let mut workers = self.workers.lock().expect("not poisoned");
            workers.push(Worker {
                name: hello.name.clone(),
                exchange: hello.exchange,
                to: to.clone(),
                alive: true,
            });
            workers.len() - 1
        };
        tracing::info!(worker = %hello.name, exchange = %hello.exchange, "worker joined");
        self.joined.notify_waiters();
        let (close, closed) = oneshot::channel();
        tokio::spawn(write_out(write, outgoing, closed));
        let gone = self.listen_to(id, &hello.name, read, &to).await;
        // Closes the connection: a silent worker that comes back finds its coordinator gone.
        drop(close);
        self.workers.lock().expect("not poisoned")[id].alive = false;
        tracing::warn!(worker = %hello.name, ?gone, "worker gone");
        let _ = self.inbox_tx.send((id, Inbound::Lost(gone)));
    }

    /// Puts worker `id`'s messages into the inbox, answering its pings on `to`, until its
    /// connection closes or it says nothing within the timeout.
    async fn listen_to(
        &self,
        id: usize,
        name: &str,
        mut read: tokio::io::BufReader<OwnedReadHalf>,
        to: &mpsc::UnboundedSender<ToWorker>,
    ) -> Gone {
        let timeout = self.heartbeat.timeout;
        loop {
            let said = tokio::time::timeout(timeout, wire::read::<_, FromWorker>(&mut read));
            match said.await {
                Ok(Ok(Some(FromWorker::Ping(n)))) => drop(to.send(ToWorker::Pong(n))),
                Ok(Ok(Some(message))) => drop(self.inbox_tx.send((id, Inbound::Message(message)))),
                Ok(end) => {
                    if let Err(e) = end {
                        tracing::warn!(worker = %name, "{e}");
                    }
                    return Gone::Closed;
                }
                Err(_) => {
                    let timeout_ms = timeout.as_millis() as u64;
                    tracing::warn!(worker = %name, timeout_ms, "worker said nothing: taken for lost");
                    return Gone::Silent;
                }
            }
        }
    }

    fn worker(&self, id: usize) -> Worker {
        self.workers.lock().expect("not poisoned")[id].clone()
    }
}

/// Writes `outgoing` to a worker's connection until it fails or `closed` fires (or its
/// sender is dropped); the connection's write side is then shut.
async fn write_out(
    mut write: OwnedWriteHalf,
    mut outgoing: mpsc::UnboundedReceiver<ToWorker>,
    mut closed: oneshot::Receiver<()>,
) {
    loop {
        let message = tokio::select! {
            biased;
            _ = &mut closed => return,
            message = outgoing.recv() => message,
        };
        let Some(message) = message else { return };
        if wire::write(&mut write, &message).await.is_err() {
            return;
        }
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
                Inbound::Lost(_) if waiting.contains(&id) => {
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
                    Some((id, Inbound::Lost(_))) => drop(waiting.remove(&id)),
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
            Inbound::Lost(Gone::Closed) => Event::Failed(SubtaskError::WorkerLost {
                worker: worker.name.clone(),
            }),
            Inbound::Lost(Gone::Silent) => Event::Failed(SubtaskError::WorkerSilent {
                worker: worker.name.clone(),
                timeout_ms: shared.heartbeat.timeout.as_millis() as u64,
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
