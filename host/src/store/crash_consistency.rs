//! Crash consistency of checkpoints, after the ALICE study: the file-system steps of writing
//! two checkpoints are recorded, and every prefix of them is replayed into a fresh folder the
//! way a crash could have left it: with everything done so far, with file contents not yet
//! synced lost (empty, or torn in half), and with folder entries not yet synced lost (a
//! created file, folder or rename gone). In every such state, each checkpoint the store
//! lists must verify and hold exactly the state written, or be refused: never half used. A
//! checkpoint whose publishing completed must survive every such crash.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::barrier::BarrierKind;
use crate::durable::{self, Step};
use crate::snapshot::Held;

/// What became of contents written but not yet synced.
#[derive(Clone, Copy, Debug)]
enum Unsynced {
    Kept,
    Lost,
    Torn,
}

/// A crash: how much of the recorded steps ran, and what of it was not durable.
#[derive(Clone, Copy, Debug)]
struct Crash {
    steps: usize,
    contents: Unsynced,
    /// Whether entries of folders not synced since (created files and folders, renames) survive.
    entries_kept: bool,
}

fn job() -> JobId {
    "job-alice".parse().unwrap()
}

/// Writes checkpoint `n` of two subtasks through the store; returns their states. Each
/// subtask keeps key group 1 whole from checkpoint 1 and adds a delta at each later one, so a
/// later checkpoint links the segment of the first.
fn write_checkpoint(
    store: &Store,
    n: u64,
    states: &mut BTreeMap<u32, Held>,
) -> BTreeMap<u32, Held> {
    let counter: OperatorId = "counter".parse().unwrap();
    for s in 0..2 {
        let held = states.entry(s).or_default();
        let changed = match n {
            1 => (
                1,
                false,
                format!("group 1 of subtask {s}").repeat(3).into_bytes(),
            ),
            n => (1, true, format!("delta {n} of subtask {s}").into_bytes()),
        };
        let position = format!("position of subtask {s} at {n}").into_bytes();
        held.merge(0..u32::MAX, position, vec![changed], false)
            .unwrap();
        let segment = Layout::segment_file_name(&job(), CheckpointId(n), "counter", s);
        held.home_new_pieces(&segment, n);
    }
    let files = states
        .iter()
        .map(|(&s, held)| {
            store
                .write_state(&job(), CheckpointId(n), &counter, s, held)
                .unwrap()
        })
        .collect();
    let checkpoint = (CheckpointId(n), BarrierKind::Checkpoint);
    let metadata =
        super::tests::counter_metadata(job(), checkpoint.0, checkpoint.1, counter, files);
    store.complete_checkpoint(&metadata).unwrap();
    states.clone()
}

/// Whether `path` is made durable by a later step of `steps` (its own sync for contents, its
/// folder's sync for an entry).
fn synced_later(steps: &[Step], path: &Path, contents: bool) -> bool {
    steps.iter().any(|step| match step {
        Step::SyncFile(p) => contents && p == path,
        Step::SyncDir(dir) => !contents && path.parent() == Some(dir.as_path()),
        _ => false,
    })
}

/// Replays the first `crash.steps` steps, recorded under `from`, into `to`.
fn replay(steps: &[Step], crash: Crash, from: &Path, to: &Path) {
    let rebase = |p: &Path| to.join(p.strip_prefix(from).unwrap());
    let done = &steps[..crash.steps];
    for (i, step) in done.iter().enumerate() {
        let later = &done[i + 1..];
        let entry_kept = |p: &Path| crash.entries_kept || synced_later(later, p, false);
        // A folder renamed later lives on under its new name if that entry is durable.
        let moved_durably = |dir: &Path| {
            later
                .iter()
                .any(|step| matches!(step, Step::Rename(old, new) if old == dir && entry_kept(new)))
        };
        match step {
            Step::CreateDir(dir) if entry_kept(dir) || moved_durably(dir) => {
                fs::create_dir_all(rebase(dir)).unwrap()
            }
            Step::Write(path, bytes)
                if entry_kept(path) && rebase(path).parent().unwrap().is_dir() =>
            {
                let bytes = match crash.contents {
                    _ if synced_later(later, path, true) => &bytes[..],
                    Unsynced::Kept => &bytes[..],
                    Unsynced::Lost => &[][..],
                    Unsynced::Torn => &bytes[..bytes.len() / 2],
                };
                fs::write(rebase(path), bytes).unwrap();
            }
            Step::Rename(old, new) if entry_kept(new) && rebase(old).exists() => {
                fs::rename(rebase(old), rebase(new)).unwrap()
            }
            Step::Link(from, to)
                if entry_kept(to)
                    && rebase(from).exists()
                    && rebase(to).parent().unwrap().is_dir() =>
            {
                fs::hard_link(rebase(from), rebase(to)).unwrap()
            }
            _ => {}
        }
    }
}

/// The invariant: every listed checkpoint verifies and holds what was written, or is refused;
/// every checkpoint in `durable` is listed and verifies.
fn check(root: &Path, written: &BTreeMap<u64, BTreeMap<u32, Held>>, durable: &[u64], crash: Crash) {
    let store = Store::open(root).unwrap();
    let listed = store.checkpoints(&job()).unwrap();
    for n in durable {
        assert!(
            listed.contains(&CheckpointId(*n)),
            "{crash:?}: durable checkpoint {n} lost"
        );
    }
    for n in listed {
        let dir = store.layout().checkpoint(&job(), n);
        let read = store
            .read_point(&dir)
            .and_then(|point| store.read_states(&point));
        match read {
            Ok(states) => {
                let expected: States = written[&n.0]
                    .iter()
                    .map(|(&s, held)| (("counter".parse().unwrap(), s), held.clone()))
                    .collect();
                assert_eq!(
                    states, expected,
                    "{crash:?}: checkpoint {n} reads other state"
                );
            }
            Err(e) => assert!(
                !durable.contains(&n.0),
                "{crash:?}: durable checkpoint {n}: {e}"
            ),
        }
    }
}

#[test]
fn every_crash_while_checkpointing_leaves_points_that_verify_or_are_refused() {
    let recorded_in = tempfile::tempdir().unwrap();
    let root = recorded_in.path().join("home");
    let store = Store::open(&root).unwrap();
    durable::record();
    let (mut written, mut states) = (BTreeMap::new(), BTreeMap::new());
    written.insert(1, write_checkpoint(&store, 1, &mut states));
    let first_done = durable::recorded();
    durable::record();
    written.insert(2, write_checkpoint(&store, 2, &mut states));
    let steps: Vec<Step> = first_done
        .iter()
        .cloned()
        .chain(durable::recorded())
        .collect();
    assert!(steps.len() > 12, "too few steps recorded: {steps:?}");

    let mut crashes = 0;
    for count in 0..=steps.len() {
        let durable: Vec<u64> = match count {
            n if n == steps.len() => vec![1, 2],
            n if n >= first_done.len() => vec![1],
            _ => vec![],
        };
        for contents in [Unsynced::Kept, Unsynced::Lost, Unsynced::Torn] {
            for entries_kept in [true, false] {
                let crash = Crash {
                    steps: count,
                    contents,
                    entries_kept,
                };
                let replayed = tempfile::tempdir().unwrap();
                replay(&steps, crash, &root, replayed.path());
                check(replayed.path(), &written, &durable, crash);
                crashes += 1;
            }
        }
    }
    assert_eq!(crashes, (steps.len() + 1) * 6);
}

#[test]
fn a_replay_of_every_step_is_the_state_folder_itself() {
    let recorded_in = tempfile::tempdir().unwrap();
    let root = recorded_in.path().join("home");
    let store = Store::open(&root).unwrap();
    durable::record();
    write_checkpoint(&store, 1, &mut BTreeMap::new());
    let steps = durable::recorded();
    let replayed = tempfile::tempdir().unwrap();
    let crash = Crash {
        steps: steps.len(),
        contents: Unsynced::Lost,
        entries_kept: false,
    };
    replay(&steps, crash, &root, replayed.path());
    let files = |root: &Path| -> BTreeMap<PathBuf, Vec<u8>> {
        let dir = root.join("jobs/job-alice/checkpoints/1");
        fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                (
                    p.strip_prefix(root).unwrap().to_owned(),
                    fs::read(&p).unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(files(replayed.path()), files(&root));
}
