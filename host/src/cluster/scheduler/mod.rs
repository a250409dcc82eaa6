//! How workers come to be, behind one trait (as Arroyo's schedulers): [`local`] starts none
//! (every subtask runs in the `host run` process: today's path, the default), [`process`]
//! starts `host worker` processes on this machine and watches them, [`kubernetes`] creates
//! them as Pods through the API server. A scheduler only brings
//! workers up and down; they join the coordinator's [`super::remote::Pool`] themselves, and
//! [`super::placement`] decides what each runs.

pub mod kubernetes;
pub mod local;
pub mod process;

use std::net::SocketAddr;

use futures::future::BoxFuture;
use tokio::sync::mpsc;

/// Why workers could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// The Kubernetes API server refused or failed a request.
    #[error("{what}: {source}")]
    Kubernetes {
        /// What was asked.
        what: String,
        /// Why not.
        source: Box<kube::Error>,
    },
    /// A worker process could not be started.
    #[error("cannot start worker {name} ({exe}): {source}")]
    Spawn {
        /// The worker.
        name: String,
        /// The program.
        exe: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The next report of a worker that ended on its own, from the watchers' channel (none ever
/// once every watcher is gone: the scheduler is stopping).
fn next_ended(ended: &mut mpsc::UnboundedReceiver<String>) -> BoxFuture<'_, String> {
    Box::pin(async move {
        match ended.recv().await {
            Some(ended) => ended,
            None => std::future::pending().await,
        }
    })
}

/// Starts, watches and stops a job's workers.
pub trait Scheduler: Send {
    /// How many workers it runs; 0: the subtasks run in the coordinator's process.
    fn workers(&self) -> usize;
    /// Starts the workers; each connects to `coordinator` and presents `token`.
    fn start<'a>(
        &'a mut self,
        coordinator: SocketAddr,
        token: &'a str,
    ) -> BoxFuture<'a, Result<(), SchedulerError>>;
    /// The next worker that ended on its own (its name and how), as it happens.
    fn ended(&mut self) -> BoxFuture<'_, String>;
    /// Stops every worker it started, and waits until they are gone.
    fn stop(&mut self) -> BoxFuture<'_, ()>;
}
