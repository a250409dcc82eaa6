//! The `local` scheduler: no worker; the job's subtasks run in the `host run` process, on the
//! runtime's own path (nothing of the cluster on it).

use std::net::SocketAddr;

use futures::future::BoxFuture;

use super::{Scheduler, SchedulerError};

/// Runs every subtask in this process.
#[derive(Debug, Default)]
pub struct Local;

impl Scheduler for Local {
    fn workers(&self) -> usize {
        0
    }

    fn start<'a>(
        &'a mut self,
        _coordinator: SocketAddr,
        _token: &'a str,
    ) -> BoxFuture<'a, Result<(), SchedulerError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    fn ended(&mut self) -> BoxFuture<'_, String> {
        Box::pin(std::future::pending())
    }

    fn stop(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}
