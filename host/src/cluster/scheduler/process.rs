//! The `process` scheduler (`host run --workers N`): N `host worker` processes on this
//! machine, their exchanges on 127.0.0.1, each watched: one that ends on its own is reported
//! and replaced (at most N replacements in a run), and the replacement joins the job's next
//! deployment. The cluster's token reaches each through its environment
//! ([`TOKEN_VARIABLE`]), never its command line (which any user may read).

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::{Scheduler, SchedulerError};

/// The environment variable a worker reads the cluster's token from.
pub const TOKEN_VARIABLE: &str = "HOST_WORKER_TOKEN";

/// Starts `host worker` processes.
pub struct Processes {
    spawner: Arc<Spawner>,
    ended: mpsc::UnboundedReceiver<String>,
}

/// What starting one more worker takes; shared with the watchers, which start replacements.
struct Spawner {
    exe: PathBuf,
    /// Arguments before `worker` (the state folder, the store).
    args: Vec<OsString>,
    workers: usize,
    started: AtomicUsize,
    /// Set once started: where workers connect, and the token.
    target: Mutex<Option<(SocketAddr, String)>>,
    stop: watch::Sender<bool>,
    watchers: Mutex<Vec<JoinHandle<()>>>,
    ended: mpsc::UnboundedSender<String>,
}

impl Processes {
    /// `workers` processes of `exe`, each run as `exe ARGS worker ...`.
    pub fn new(exe: PathBuf, args: Vec<OsString>, workers: usize) -> Processes {
        let (ended_tx, ended) = mpsc::unbounded_channel();
        let spawner = Arc::new(Spawner {
            exe,
            args,
            workers,
            started: AtomicUsize::new(0),
            target: Mutex::new(None),
            stop: watch::channel(false).0,
            watchers: Mutex::default(),
            ended: ended_tx,
        });
        Processes { spawner, ended }
    }
}

impl Spawner {
    /// Starts one worker and its watcher.
    fn spawn(self: &Arc<Self>) -> Result<(), SchedulerError> {
        let (coordinator, token) = self
            .target
            .lock()
            .expect("not poisoned")
            .clone()
            .expect("started");
        let name = format!("worker-{}", self.started.fetch_add(1, Ordering::SeqCst) + 1);
        let mut command = tokio::process::Command::new(&self.exe);
        command
            .args(&self.args)
            .arg("worker")
            .arg("--coordinator")
            .arg(coordinator.to_string())
            .arg("--name")
            .arg(&name)
            .env(TOKEN_VARIABLE, token)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().map_err(|source| SchedulerError::Spawn {
            name: name.clone(),
            exe: self.exe.display().to_string(),
            source,
        })?;
        tracing::info!(worker = %name, pid = child.id(), "worker started");
        let watcher = tokio::spawn(self.clone().watch(name, child));
        self.watchers.lock().expect("not poisoned").push(watcher);
        Ok(())
    }

    /// Waits for the worker to end, or for the stop; reports and replaces one that ended on
    /// its own.
    async fn watch(self: Arc<Self>, name: String, mut child: tokio::process::Child) {
        let mut stop = self.stop.subscribe();
        tokio::select! {
            status = child.wait() => {
                let how = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                tracing::warn!(worker = %name, "worker ended: {how}");
                let _ = self.ended.send(format!("{name} ended: {how}"));
                let stopping = *self.stop.subscribe().borrow();
                if self.started.load(Ordering::SeqCst) < 2 * self.workers
                    && !stopping
                    && let Err(e) = self.spawn()
                {
                    tracing::warn!("no replacement for {name}: {e}");
                }
            }
            () = async { drop(stop.wait_for(|stopping| *stopping).await) } => {
                let _ = child.kill().await;
            }
        }
    }
}

impl Scheduler for Processes {
    fn workers(&self) -> usize {
        self.spawner.workers
    }

    fn start<'a>(
        &'a mut self,
        coordinator: SocketAddr,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SchedulerError>> {
        let target = Some((coordinator, token.to_owned()));
        *self.spawner.target.lock().expect("not poisoned") = target;
        let started = (0..self.spawner.workers).try_for_each(|_| self.spawner.spawn());
        Box::pin(std::future::ready(started))
    }

    fn ended(&mut self) -> BoxFuture<'_, String> {
        super::next_ended(&mut self.ended)
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.spawner.stop.send_replace(true);
            let watchers =
                std::mem::take(&mut *self.spawner.watchers.lock().expect("not poisoned"));
            for watcher in watchers {
                let _ = watcher.await;
            }
        })
    }
}
