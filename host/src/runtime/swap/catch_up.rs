//! A live swap's catch-up (see [`super`]): the new module's instances, restored beside the
//! running ones, take in what the running ones changed since, one checkpoint at a time, in the
//! background ([`rounds`]); the last time at a checkpoint where the operator's subtasks wait,
//! and the new instances take over. Each round hands them only the key groups' pieces added
//! since the round before ([`Held::changes_since`], `restore-changes`).

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio::time::{Duration, Instant};

use super::{Handover, Taken, answer, held_by_subtask, receive_all};
use crate::engine::Instance;
use crate::engine::bindings::StateOrigin;
use crate::engine::borrowed::{KeyGroupStateRef, RestoredRef};
use crate::ids::CheckpointId;
use crate::runtime::subtask::Event;
use crate::runtime::{OperatorInfo, SwapFailure};
use crate::snapshot::Held;

/// A background step of a staged swap at most this long makes the next catch-up the last:
/// the changes it brings are those of about that long.
const LAST_STEP: Duration = Duration::from_millis(10);

/// Background catch-up rounds before the last, at most.
const ROUNDS_MAX: u32 = 10;

/// Two background rounds in a row that take more than this part of the shortest before them
/// make the next the last: the rounds no longer converge (the operator changes its state about
/// as fast as the new module takes the changes in), and more would only cost work. (Two, as
/// one round's time is noisy.)
const CONVERGING: f64 = 0.9;

/// Catches the staged instances up, one checkpoint at a time, on what changed since they were
/// restored (at checkpoint `at`, from the handovers `base`): in the background while the old
/// instances run on, until a round's work is short, or the rounds stop getting shorter (or
/// after [`ROUNDS_MAX`] rounds); then once more at a checkpoint where the subtasks wait, and
/// the new instances take over. `step`: how long staging took.
///
/// The next round's checkpoint is asked for as soon as a round ends, and nothing else runs in
/// between: a round's changes are those made during the round before, so each round's work
/// comes back in the next. (The host's copy of the new instances' state is not refreshed
/// between rounds: a delta snapshot there took about half as long as the catch-up itself, and
/// flat out the rounds stopped shrinking at about 75 ms. The instances keep every round's
/// changes marked, and their first checkpoint after the swap writes them as a delta on the
/// copy made at staging.)
pub(super) async fn rounds(
    mut staged: Staged,
    running: &OperatorInfo,
    (mut at, mut base): (CheckpointId, BTreeMap<u32, Handover>),
    step: Duration,
    mut handovers: mpsc::UnboundedReceiver<Handover>,
    events: &mpsc::UnboundedSender<Event>,
) {
    let mut pace = Pace::default();
    let mut last = pace.last_after(step);
    for round in 1.. {
        let _ = events.send(Event::Staged {
            checkpoint: at,
            last,
        });
        let Some(now) = receive_all(&mut handovers, base.len()).await else {
            return;
        };
        at = now.values().map(|h| h.checkpoint).max().unwrap_or(at);
        let waits = now.values().any(|h| h.reply.is_some());
        let since = Instant::now();
        let result = catch_up(&mut staged.instances, running, &base, &now).await;
        let step = since.elapsed();
        let catch_up_ms = step.as_secs_f64() * 1e3;
        tracing::info!(operator = %running.id, checkpoint = %at, round, last = waits, catch_up_ms, ok = result.is_ok(), "new instances caught up");
        last = pace.last_after(step);
        if waits || result.is_err() {
            return answer(at, result.map(|()| staged.taken()), now, events);
        }
        base = now;
    }
}

/// Whether the next catch-up is the last, from how long the background rounds took.
#[derive(Debug)]
struct Pace {
    shortest: Duration,
    /// Rounds in a row no shorter than [`CONVERGING`] of the shortest before them.
    stalled: u32,
    rounds: u32,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            shortest: Duration::MAX,
            stalled: 0,
            rounds: 0,
        }
    }
}

impl Pace {
    /// After a step (staging, then each round's catch-up) of `step`: whether the next round is
    /// the last.
    fn last_after(&mut self, step: Duration) -> bool {
        match step > self.shortest.mul_f64(CONVERGING) {
            true => self.stalled += 1,
            false => self.stalled = 0,
        }
        self.shortest = self.shortest.min(step);
        self.rounds += 1;
        step <= LAST_STEP || self.rounds > ROUNDS_MAX || self.stalled >= 2
    }
}

/// The new module's instances, restored beside the running ones, and the host's copy of each
/// one's state (as it will keep it once they take over).
pub(super) struct Staged {
    instances: Vec<Instance>,
    copies: Vec<Held>,
}

impl Staged {
    /// `instances`, just restored from `checkpoint`, and a full snapshot of each: after the
    /// swap, they snapshot only what changed since (every catch-up's changes stay marked in
    /// them), rather than everything at their first checkpoint.
    pub(super) async fn copied(
        mut instances: Vec<Instance>,
        checkpoint: CheckpointId,
    ) -> Result<Staged, SwapFailure> {
        let mut copies = Vec::with_capacity(instances.len());
        for instance in &mut instances {
            let snapshot = instance.snapshot(checkpoint.0, true).await;
            let snapshot = snapshot.map_err(SwapFailure::CatchUp)?;
            let (operator_state, changed) = snapshot.into_changes();
            let mut copy = Held::default();
            let merged = copy.merge(instance.key_groups(), operator_state, changed, true);
            merged.map_err(|problem| SwapFailure::Malformed {
                subtask: instance.subtask().clone(),
                problem,
            })?;
            copies.push(copy);
        }
        Ok(Staged { instances, copies })
    }

    /// Each instance and its copy, to take over.
    fn taken(self) -> Vec<Taken> {
        let copies = self.copies.into_iter().map(Some);
        self.instances.into_iter().zip(copies).collect()
    }
}

/// Hands each staged instance what its subtask's state changed from `base` (staged from) to
/// `now` (the catch-up's checkpoint): the operator state, and the key groups' new pieces.
async fn catch_up(
    instances: &mut [Instance],
    running: &OperatorInfo,
    base: &BTreeMap<u32, Handover>,
    now: &BTreeMap<u32, Handover>,
) -> Result<(), SwapFailure> {
    let operator = &running.id;
    let (base, now) = (
        held_by_subtask(operator, base)?,
        held_by_subtask(operator, now)?,
    );
    let origin = StateOrigin {
        module_name: running.module_name.clone(),
        module_version: running.module_version.clone(),
        module_sha256: running.module_sha256.clone(),
    };
    for (instance, (index, held)) in instances.iter_mut().zip(now) {
        let changes = held.changes_since(base[&index]);
        let key_groups = changes
            .iter()
            .map(|(key_group, delta, state)| KeyGroupStateRef {
                key_group: *key_group,
                delta: *delta,
                state: &state[..],
            });
        let changes = RestoredRef {
            parallelism: running.parallelism,
            operator_states: vec![&held.operator_state[..]],
            key_groups: key_groups.collect(),
        };
        let caught_up = instance.restore_changes(&changes, &origin).await;
        caught_up.map_err(SwapFailure::CatchUp)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rounds_go_on_while_they_shrink_and_end_when_short_or_stalled() {
        let mut pace = Pace::default();
        // Staging, then rounds that shrink: more to come.
        assert!(!pace.last_after(ms(300)));
        assert!(!pace.last_after(ms(120)));
        assert!(!pace.last_after(ms(60)));
        // One round no shorter than 0.9 of the shortest is noise; two in a row, a stall.
        assert!(!pace.last_after(ms(58)));
        assert!(pace.last_after(ms(70)));

        let mut pace = Pace::default();
        assert!(!pace.last_after(ms(300)));
        assert!(!pace.last_after(ms(11)));
        assert!(
            pace.last_after(LAST_STEP),
            "a short round makes the next the last"
        );
    }

    #[test]
    fn the_round_after_the_tenth_background_one_is_the_last() {
        let mut pace = Pace::default();
        // Staging decides round 1; each round, halving (never short), decides the next.
        for round in 1..=ROUNDS_MAX {
            let step = ms(20_000 >> round);
            assert!(!pace.last_after(step), "round {round}");
        }
        assert!(pace.last_after(ms(15)));
    }
}
