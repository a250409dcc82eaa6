//! Crash consistency of the state folder, after the ALICE study: the file-system steps of a
//! job's life are recorded (the job created, three checkpoints, a savepoint renamed across
//! folders into `savepoints/`, a checkpoint removed by retention), and every prefix of them is
//! replayed into a fresh folder the way a crash could have left it. The replay models what a
//! crash keeps exactly: a file's contents not yet synced are kept, lost or torn in half, each
//! file its own fate; an entry of a folder not synced since (a created file or folder, a
//! rename, a removal) is lost, unless the crash keeps entries; a folder exists only where its
//! parent does. In every such state, each point the store lists must verify and hold exactly
//! the state written, or be refused: never half used. A point whose publishing completed must
//! survive every such crash until its removal begins.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::barrier::BarrierKind;
use crate::durable::{self, Step};
use crate::snapshot::Held;

/// What became of one file's contents written but not yet synced.
#[derive(Clone, Copy, Debug)]
enum Unsynced {
    Kept,
    Lost,
    Torn,
}

/// The fates of the files a crash caught unsynced: all alike, or each its own, drawn from a
/// seed (ALICE's combinations, bounded to a few draws a prefix).
#[derive(Clone, Copy, Debug)]
enum Fates {
    All(Unsynced),
    Mixed(u64),
}

impl Fates {
    /// Every combination tried at each prefix.
    const TRIED: [Fates; 7] = [
        Fates::All(Unsynced::Kept),
        Fates::All(Unsynced::Lost),
        Fates::All(Unsynced::Torn),
        Fates::Mixed(1),
        Fates::Mixed(2),
        Fates::Mixed(3),
        Fates::Mixed(4),
    ];

    /// The fate of the file written at step `step`.
    fn of(self, step: usize) -> Unsynced {
        match self {
            Fates::All(fate) => fate,
            Fates::Mixed(seed) => {
                let draw = xxhash_rust::xxh3::xxh3_64_with_seed(&step.to_le_bytes(), seed);
                [Unsynced::Kept, Unsynced::Lost, Unsynced::Torn][(draw % 3) as usize]
            }
        }
    }
}

/// A crash: how much of the recorded steps ran, and what of it was not durable.
#[derive(Clone, Copy, Debug)]
struct Crash {
    steps: usize,
    contents: Fates,
    /// Whether entries of folders not synced since (created files and folders, renames,
    /// removals) survive.
    entries_kept: bool,
}

fn job() -> JobId {
    "job-alice".parse().unwrap()
}

/// A point the recorded life wrote: where it lies, what it holds, and between which steps it
/// must survive any crash (from its publishing's last step until its removal's first).
struct Written {
    dir: PathBuf,
    states: BTreeMap<u32, Held>,
    durable_from: usize,
    durable_until: usize,
}

/// Writes checkpoint `n` of two subtasks through the store, as a savepoint with `savepoint`;
/// returns its folder. Each subtask keeps key group 1 whole from checkpoint 1 and adds a delta
/// at each later one, so a later point links (or copies) the segment of the first.
fn write_point(
    store: &Store,
    n: u64,
    states: &mut BTreeMap<u32, Held>,
    savepoint: bool,
) -> PathBuf {
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
    let kind = match savepoint {
        true => BarrierKind::Savepoint,
        false => BarrierKind::Checkpoint,
    };
    let metadata = super::tests::counter_metadata(job(), CheckpointId(n), kind, counter, files);
    match savepoint {
        true => {
            let id = SavepointId::generate(&job(), CheckpointId(n));
            store.complete_savepoint(&metadata, &id).unwrap()
        }
        false => store.complete_checkpoint(&metadata).unwrap(),
    }
}

/// Records a job's life in a state folder under `root`: its steps and the points it wrote.
fn record_life(root: &Path) -> (Vec<Step>, Vec<Written>) {
    let store = Store::open(root).unwrap();
    durable::record();
    let status = super::tests::status_of(&job());
    store
        .create_job(&status, "name = \"alice\"", CheckpointId(1))
        .unwrap();
    let (mut written, mut states) = (Vec::new(), BTreeMap::new());
    for (n, savepoint) in [(1, false), (2, false), (3, true)] {
        let dir = write_point(&store, n, &mut states, savepoint);
        let durable_from = durable::journal_len();
        let (states, durable_until) = (states.clone(), usize::MAX);
        written.push(Written {
            dir,
            states,
            durable_from,
            durable_until,
        });
    }
    // Retention removes checkpoint 1; the points after it linked its segments.
    written[0].durable_until = durable::journal_len();
    store
        .remove_checkpoints(&job(), &[CheckpointId(1)])
        .unwrap();
    (durable::recorded(), written)
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

/// Replays the first `crash.steps` steps, recorded under `from`, into `to` (a state folder as
/// it was before the recording began).
fn replay(steps: &[Step], crash: Crash, from: &Path, to: &Path) {
    let rebase = |p: &Path| to.join(p.strip_prefix(from).unwrap());
    let has_parent = |p: &Path| rebase(p).parent().unwrap().is_dir();
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
            Step::CreateDir(dir) if (entry_kept(dir) || moved_durably(dir)) && has_parent(dir) => {
                fs::create_dir(rebase(dir)).unwrap()
            }
            Step::Write(path, bytes) if entry_kept(path) && has_parent(path) => {
                let bytes = match crash.contents.of(i) {
                    _ if synced_later(later, path, true) => &bytes[..],
                    Unsynced::Kept => &bytes[..],
                    Unsynced::Lost => &[][..],
                    Unsynced::Torn => &bytes[..bytes.len() / 2],
                };
                fs::write(rebase(path), bytes).unwrap();
            }
            Step::Rename(old, new)
                if entry_kept(new) && rebase(old).exists() && has_parent(new) =>
            {
                fs::rename(rebase(old), rebase(new)).unwrap()
            }
            Step::Link(from, to) if entry_kept(to) && rebase(from).exists() && has_parent(to) => {
                fs::hard_link(rebase(from), rebase(to)).unwrap()
            }
            Step::Remove(dir) if entry_kept(dir) && rebase(dir).exists() => {
                fs::remove_dir_all(rebase(dir)).unwrap()
            }
            _ => {}
        }
    }
}

/// Every point of the job the store at `root` lists: its checkpoints and its savepoints.
fn listed_points(store: &Store) -> Vec<PathBuf> {
    let checkpoints = store.checkpoints(&job()).unwrap().into_iter();
    let checkpoints = checkpoints.map(|n| store.layout().checkpoint(&job(), n));
    let savepoints = store.savepoint_ids().unwrap().into_iter();
    let savepoints = savepoints.map(|id| store.layout().savepoint(&id));
    checkpoints.chain(savepoints).collect()
}

/// The invariant: every listed point verifies and holds what was written, or is refused;
/// every point durable after `crash.steps` steps is listed and verifies.
fn check(root: &Path, from: &Path, written: &[Written], crash: Crash) {
    let store = Store::open(root).unwrap();
    let listed = listed_points(&store);
    let rebase = |p: &Path| root.join(p.strip_prefix(from).unwrap());
    for point in written {
        let (dir, steps) = (rebase(&point.dir), crash.steps);
        let durable = (point.durable_from..=point.durable_until).contains(&steps);
        assert!(
            !durable || listed.contains(&dir),
            "{crash:?}: durable {dir:?} lost"
        );
        if !listed.contains(&dir) {
            continue;
        }
        let read = store.read_point(&dir).and_then(|p| store.read_states(&p));
        match read {
            Ok(states) => {
                let expected: States = point
                    .states
                    .iter()
                    .map(|(&s, held)| (("counter".parse().unwrap(), s), held.clone()))
                    .collect();
                assert_eq!(states, expected, "{crash:?}: {dir:?} reads other state");
            }
            Err(e) => assert!(!durable, "{crash:?}: durable {dir:?}: {e}"),
        }
    }
}

#[test]
fn every_crash_in_a_jobs_life_leaves_points_that_verify_or_are_refused() {
    let recorded_in = tempfile::tempdir().unwrap();
    let root = recorded_in.path().join("home");
    let (steps, written) = record_life(&root);
    assert!(steps.len() > 40, "too few steps recorded: {steps:?}");
    assert!(steps.iter().any(|s| matches!(s, Step::Remove(_))));

    let mut crashes = 0;
    for count in 0..=steps.len() {
        for contents in Fates::TRIED {
            for entries_kept in [true, false] {
                let crash = Crash {
                    steps: count,
                    contents,
                    entries_kept,
                };
                let replayed = tempfile::tempdir().unwrap();
                let to = replayed.path().join("home");
                Store::open(&to).unwrap();
                replay(&steps, crash, &root, &to);
                check(&to, &root, &written, crash);
                crashes += 1;
            }
        }
    }
    assert_eq!(crashes, (steps.len() + 1) * Fates::TRIED.len() * 2);
}

#[test]
fn a_replay_of_every_step_is_the_state_folder_itself() {
    let recorded_in = tempfile::tempdir().unwrap();
    let root = recorded_in.path().join("home");
    let (steps, _) = record_life(&root);
    let replayed = tempfile::tempdir().unwrap();
    let to = replayed.path().join("home");
    Store::open(&to).unwrap();
    let crash = Crash {
        steps: steps.len(),
        contents: Fates::All(Unsynced::Lost),
        entries_kept: false,
    };
    replay(&steps, crash, &root, &to);
    assert_eq!(files_under(&to), files_under(&root));
}

/// Every file under `root` (lock files aside), by path relative to it, with its bytes.
fn files_under(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_none_or(|e| e != "lock") {
                let bytes = fs::read(&path).unwrap();
                files.insert(path.strip_prefix(root).unwrap().to_owned(), bytes);
            }
        }
    }
    files
}
