//! Restoring an operator's subtasks from a point, at the parallelism it was taken at or
//! another: the point's state, read back and verified by the store, goes to the new subtasks
//! as [`snapshot::plan_restore`] decides (key groups, each a chain of pieces, and operator
//! states), and each subtask's guest `restore`s it. Loading state only: nothing outside the guests.

use super::{BuildCause, BuildError, OperatorInfo, RestoreFrom};
use crate::engine::Instance;
use crate::engine::bindings::StateOrigin;
use crate::engine::borrowed::{KeyGroupStateRef, RestoredRef};
use crate::snapshot::{self, Assigned, Held};
use crate::store::OperatorState;
use crate::topology::OperatorPlan;

/// How an operator's state moved from the point's subtasks to the job's, for `host check`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remap {
    /// The parallelism of the point.
    pub from_parallelism: u32,
    /// For each new subtask: old subtask -> (key groups, bytes) it received from it.
    pub subtasks: Vec<std::collections::BTreeMap<u32, (u32, u64)>>,
}

/// Restores `instances`, the started subtasks of `op` (all, or those that run here), from the point's state of `op`, if it
/// has some (an operator new to the job starts empty). Records the remapping in `info`.
pub(super) async fn restore_operator(
    op: &OperatorPlan,
    instances: &mut [Instance],
    restore: Option<&RestoreFrom>,
    info: &mut OperatorInfo,
) -> Result<(), Vec<BuildError>> {
    let Some(restore) = restore else {
        return Ok(());
    };
    let Some(state) = restore.metadata.operators.iter().find(|s| s.id == op.id) else {
        return Ok(());
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
    let mut errors = Vec::new();
    // The instances may be a share of the operator's subtasks (the others run elsewhere).
    for instance in instances.iter_mut() {
        let index = instance.subtask().index;
        let restored = restored(state.parallelism, &assigned[index as usize]);
        if let Err(e) = instance.restore(&restored, &origin).await {
            errors.push(error(Some(index), e.into()));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
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
