//! One operator's state in a point, walked subtask by subtask (one subtask's state files and
//! segments in memory at a time), each key group's chain resolved in key-group order: what
//! `read` and `repartition` go through.

use super::envelope::{self, Group, Opened};
use super::{Place, StateError};
use crate::ids::OperatorId;
use crate::key_group::subtask_of_key_group;
use crate::store::{OperatorState, Point, StateLayout, Store};

/// The operator `id` of `point` (`shown`: the point, for people).
pub(super) fn operator<'p>(
    point: &'p Point,
    shown: &str,
    id: &OperatorId,
) -> Result<&'p OperatorState, StateError> {
    let found = point.metadata.operators.iter().find(|op| &op.id == id);
    found.ok_or_else(|| StateError::UnknownOperator {
        point: shown.to_owned(),
        operator: id.clone(),
        known: point
            .metadata
            .operators
            .iter()
            .map(|op| op.id.clone())
            .collect(),
    })
}

/// Refuses a point whose state files are not kept as key-group chains (written before
/// metadata format 3): `host state` writes only chains, and a point is of one layout.
pub(super) fn require_chains(point: &Point, shown: &str) -> Result<(), StateError> {
    match point.metadata.state_layout {
        StateLayout::Chained | StateLayout::Timed => Ok(()),
        StateLayout::Blob | StateLayout::Grouped => Err(StateError::OldLayout {
            point: shown.to_owned(),
        }),
    }
}

/// What a walk takes: every key group, or one; operator state or not.
#[derive(Clone, Copy, Debug)]
pub(super) struct Select {
    /// Only this key group.
    pub group: Option<u32>,
    /// Whether operator states are met too.
    pub operator_state: bool,
}

/// What a walk meets.
pub(super) enum Met {
    /// A subtask's operator state (never an empty one).
    OperatorState {
        /// The subtask.
        subtask: u32,
        /// Its envelope.
        opened: Opened,
    },
    /// A key group's state.
    Group {
        /// The key group.
        group: u32,
        /// Its keys and values.
        state: Group,
    },
}

/// Walks the state of `op` in `point` as `select` says, handing each operator state and key
/// group to `visit`, in subtask and key-group order. Every blob is checked to be in the
/// envelope as it is met.
pub(super) fn walk(
    store: &Store,
    point: &Point,
    op: &OperatorState,
    select: Select,
    mut visit: impl FnMut(Met) -> Result<(), StateError>,
) -> Result<(), StateError> {
    let max_parallelism = point.metadata.max_parallelism;
    let owner = select
        .group
        .map(|group| subtask_of_key_group(group, max_parallelism, op.parallelism));
    let picked = |(id, file): &(&OperatorId, &crate::store::StateFile)| {
        *id == &op.id && owner.is_none_or(|owner| owner == file.subtask)
    };
    store.each_state(point, picked, |_, subtask, held| {
        if select.operator_state && !held.operator_state.is_empty() {
            let opened = operator_state(&op.id, subtask, &held.operator_state)?;
            visit(Met::OperatorState { subtask, opened })?;
        }
        for (&group, chain) in &held.key_groups {
            if select.group.is_some_and(|only| only != group) {
                continue;
            }
            let state = resolve(&op.id, subtask, group, chain)?;
            visit(Met::Group { group, state })?;
        }
        Ok(())
    })
}

/// The envelope of a subtask's operator state.
pub(super) fn operator_state(
    operator: &OperatorId,
    subtask: u32,
    bytes: &[u8],
) -> Result<Opened, StateError> {
    let foreign = |found| StateError::Foreign {
        operator: operator.clone(),
        place: Place::OperatorState { subtask },
        found,
    };
    let opened = envelope::open(bytes).map_err(foreign)?;
    if opened.removed.is_some() {
        let what = "an array of 4 (a key group's delta), not 3".to_owned();
        return Err(foreign(envelope::Foreign::NotEnvelope(what)));
    }
    Ok(opened)
}

/// The state of key group `group` of `subtask`, from its chain.
pub(super) fn resolve(
    operator: &OperatorId,
    subtask: u32,
    group: u32,
    chain: &crate::snapshot::Chain,
) -> Result<Group, StateError> {
    let pieces = chain.iter().map(|piece| &piece.bytes[..]);
    envelope::resolve(pieces).map_err(|problem| match problem {
        envelope::GroupError::Foreign { found, .. } => StateError::Foreign {
            operator: operator.clone(),
            place: Place::KeyGroup { group, subtask },
            found,
        },
        problem => StateError::Malformed {
            operator: operator.clone(),
            group,
            subtask,
            problem,
        },
    })
}
