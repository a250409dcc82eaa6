//! Restoring an operator's subtasks from a point, at the parallelism it was taken at or
//! another: the point's state, read back and verified by the store, goes to the new subtasks
//! as [`snapshot::plan_restore`] decides (key groups, each a chain of pieces, and operator
//! states), and each subtask's guest `restore`s it. The host's own state goes along: each key
//! group's timers to the subtask that owns the group, rebuilt into its timer service, and a
//! source's watermark. Loading state only: nothing outside the guests.

use std::future::Future;

use super::instance::RoleInstance;
use super::{BuildCause, BuildError, OperatorInfo, RestoreFrom};
use crate::engine::Instance;
use crate::engine::bindings::StateOrigin;
use crate::engine::borrowed::{KeyGroupStateRef, RestoredRef};
use crate::snapshot::{self, Assigned, Held};
use crate::store::OperatorState;
use crate::time::timers::TimerService;
use crate::topology::OperatorPlan;

/// How an operator's state moved from the point's subtasks to the job's, for `host check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remap {
    /// The parallelism of the point.
    pub from_parallelism: u32,
    /// For each new subtask: old subtask -> (key groups, bytes) it received from it.
    pub subtasks: Vec<std::collections::BTreeMap<u32, (u32, u64)>>,
}

/// What restoring needs of a subtask's instance: a component's (a live swap restores those),
/// or a component's or connector's as a job runs them.
pub(super) trait Restorable {
    /// The subtask it belongs to.
    fn subtask_index(&self) -> u32;
    /// The key groups its subtask owns.
    fn owned_key_groups(&self) -> std::ops::Range<u32>;
    /// Whether it keeps timers (a component of `timed-operator`).
    fn takes_timers(&self) -> bool;
    /// Loads state `origin` wrote.
    fn restore_state(
        &mut self,
        state: &RestoredRef<'_>,
        origin: &StateOrigin,
    ) -> impl Future<Output = Result<(), BuildCause>> + Send;
}

/// Both restore the same way: through their own `restore`.
macro_rules! restorable {
    ($($instance:ty),*) => {$(
        impl Restorable for $instance {
            fn subtask_index(&self) -> u32 {
                self.subtask().index
            }
            fn owned_key_groups(&self) -> std::ops::Range<u32> {
                self.key_groups()
            }
            fn takes_timers(&self) -> bool {
                self.keeps_timers()
            }
            async fn restore_state(
                &mut self,
                state: &RestoredRef<'_>,
                origin: &StateOrigin,
            ) -> Result<(), BuildCause> {
                Ok(self.restore(state, origin).await?)
            }
        }
    )*};
}

restorable!(Instance, RoleInstance);

/// The host's own state of a restored subtask, beside its guest's.
#[derive(Debug)]
pub(super) struct RestoredTime {
    /// Its pending timers.
    pub(super) timers: TimerService,
    /// Sources: the watermark it resumes after.
    pub(super) watermark: Option<i64>,
}

/// Restores `instances`, the started subtasks of `op`, from the point's state of `op`, if it
/// has some (an operator new to the job starts empty). Records the remapping in `info`.
/// Returns each subtask's timers and watermark, as the point holds them (none without state).
pub(super) async fn restore_operator(
    op: &OperatorPlan,
    instances: &mut [impl Restorable],
    restore: Option<&RestoreFrom>,
    info: &mut OperatorInfo,
) -> Result<Vec<Option<RestoredTime>>, Vec<BuildError>> {
    let none = || instances.iter().map(|_| None).collect();
    let Some(restore) = restore else {
        return Ok(none());
    };
    let Some(state) = restore.metadata.operators.iter().find(|s| s.id == op.id) else {
        return Ok(none());
    };
    let error = |subtask, cause| BuildError {
        operator: op.id.clone(),
        subtask,
        cause,
    };
    let old = old_states(restore, state).map_err(|cause| vec![error(None, cause)])?;
    let max_parallelism = restore.metadata.max_parallelism;
    let assigned = snapshot::plan_restore(&old, op.parallelism, max_parallelism, info.rescale)
        .map_err(|e| vec![error(None, e.into())])?;
    info.remap = Some(Remap {
        from_parallelism: state.parallelism,
        subtasks: assigned.iter().map(|a| a.moved.clone()).collect(),
    });
    let origin = StateOrigin {
        module_name: state.module_name.clone(),
        module_version: state.module_version.clone(),
        module_sha256: state.module_sha256.clone(),
    };
    let (mut errors, mut times) = (Vec::new(), Vec::new());
    for (instance, assigned) in instances.iter_mut().zip(assigned) {
        let index = instance.subtask_index();
        match restored_time(instance, &assigned, max_parallelism) {
            Ok(time) => times.push(Some(time)),
            Err(cause) => errors.push(error(Some(index), cause)),
        }
        let restored = restored(state.parallelism, &assigned);
        if let Err(e) = instance.restore_state(&restored, &origin).await {
            errors.push(error(Some(index), e));
        }
    }
    if errors.is_empty() {
        Ok(times)
    } else {
        Err(errors)
    }
}

/// The timers and watermark `assigned` holds for `instance`'s subtask; refused if they do not
/// read back, or if its module keeps no timers and some are pending.
fn restored_time(
    instance: &impl Restorable,
    assigned: &Assigned,
    max_parallelism: u32,
) -> Result<RestoredTime, BuildCause> {
    let subtask = instance.subtask_index();
    let chains = assigned.timers.iter().map(|(&group, chain)| {
        let pieces = chain.iter().map(|piece| &piece.bytes[..]);
        (group, pieces.collect())
    });
    let owned = instance.owned_key_groups();
    let timers = TimerService::restore(max_parallelism, owned, chains)
        .map_err(|error| BuildCause::Timers { subtask, error })?;
    let pending = timers.pending();
    if pending > 0 && !instance.takes_timers() {
        return Err(BuildCause::TimersNotKept { subtask, pending });
    }
    Ok(RestoredTime {
        timers,
        watermark: assigned.watermark,
    })
}

/// The state of every subtask of the point's operator `state`, in subtask order.
fn old_states(restore: &RestoreFrom, state: &OperatorState) -> Result<Vec<Held>, BuildCause> {
    (0..state.parallelism)
        .map(|subtask| {
            let held = restore.states.get(&(state.id.clone(), subtask)).ok_or(
                BuildCause::MissingState {
                    checkpoint: restore.metadata.checkpoint,
                    subtask,
                },
            )?;
            Ok(held.clone())
        })
        .collect()
}

/// What a guest's `restore` receives: the bytes `assigned` holds, lowered into the guest from
/// there.
fn restored(parallelism: u32, assigned: &Assigned) -> RestoredRef<'_> {
    RestoredRef {
        parallelism,
        operator_states: assigned.operator_states.iter().map(|s| &s[..]).collect(),
        key_groups: assigned
            .key_groups
            .iter()
            .flat_map(|(&key_group, chain)| {
                KeyGroupStateRef::chain(key_group, chain.iter().map(|piece| &piece.bytes[..]))
            })
            .collect(),
    }
}
