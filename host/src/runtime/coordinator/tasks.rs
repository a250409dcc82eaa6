//! The subtasks of a job that runs here, as tokio tasks: spawned, each telling the coordinator
//! how it ended; one that panicked fails the job, named.

use std::collections::BTreeMap;

use tokio::task::JoinSet;

use super::Step;
use crate::runtime::JobFailure;
use crate::runtime::subtask::{Event, Subtask, SubtaskError};

/// Spawns every subtask; each tells the coordinator how it ended. Returns their tasks, and
/// each task's subtask by task id (to name one that panicked).
pub fn spawn_subtasks(subtasks: Vec<Subtask>) -> (JoinSet<()>, BTreeMap<tokio::task::Id, String>) {
    let mut tasks = JoinSet::new();
    let mut names = BTreeMap::new();
    for subtask in subtasks {
        let (id, events) = (subtask.id.clone(), subtask.events.clone());
        let name = id.to_string();
        let handle = tasks.spawn(async move {
            let event = match subtask.run().await {
                Ok(()) => Event::Done(id),
                Err(SubtaskError::Closed(closed)) => Event::PeerGone(id, closed),
                Err(e) => Event::Failed(e),
            };
            let _ = events.send(event);
        });
        names.insert(handle.id(), name);
    }
    (tasks, names)
}

/// A subtask's task ended: the job fails if it panicked.
pub(super) fn panicked(
    joined: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
    names: &BTreeMap<tokio::task::Id, String>,
) -> Step {
    match joined {
        Err(e) if e.is_panic() => {
            let name = names.get(&e.id()).cloned().unwrap_or_default();
            Step::Fail(JobFailure::Panicked(name))
        }
        _ => Step::Go,
    }
}
