use std::os::unix::fs::MetadataExt;

use super::*;
use crate::barrier::BarrierKind;
use crate::ids::Role;
use crate::key_group::KEY_GROUP_FUNCTION;

pub(super) fn job() -> JobId {
    "job-test".parse().unwrap()
}

/// Operator state only: `state {s}`.
pub(super) fn operator_state(s: u32) -> Held {
    Held {
        operator_state: format!("state {s}").into_bytes().into(),
        ..Held::default()
    }
}

/// Writes a two-subtask checkpoint `n` of operator `counter` and publishes it.
pub(super) fn write_point(store: &Store, n: u64, kind: BarrierKind) -> (Metadata, PathBuf) {
    let mut states = BTreeMap::from([(0, operator_state(0)), (1, operator_state(1))]);
    write_states(store, n, kind, &mut states)
}

/// Writes checkpoint `n` of `states` (homing their new pieces) and publishes it.
pub(super) fn write_states(
    store: &Store,
    n: u64,
    kind: BarrierKind,
    states: &mut BTreeMap<u32, Held>,
) -> (Metadata, PathBuf) {
    let counter: OperatorId = "counter".parse().unwrap();
    let checkpoint = CheckpointId(n);
    let files = states
        .iter_mut()
        .map(|(&s, held)| {
            held.home_new_pieces(
                &Layout::segment_file_name(&job(), checkpoint, "counter", s),
                n,
            );
            store
                .write_state(&job(), checkpoint, &counter, s, held)
                .unwrap()
        })
        .collect();
    let metadata = counter_metadata(job(), CheckpointId(n), kind, counter, files);
    let dir = match kind {
        BarrierKind::Checkpoint => store.complete_checkpoint(&metadata).unwrap(),
        BarrierKind::Savepoint => store
            .complete_savepoint(&metadata, &SavepointId::generate(&job(), CheckpointId(n)))
            .unwrap(),
    };
    (metadata, dir)
}

/// The status of `job`, running, with no mounts and no modules.
pub(super) fn status_of(job: &JobId) -> JobStatus {
    JobStatus {
        job: job.clone(),
        name: "t".to_owned(),
        started_unix_ms: 0,
        resumed_from: None,
        writable_mounts: Vec::new(),
        modules: Vec::new(),
        state: JobState::Running { pid: 1 },
    }
}

/// The metadata of checkpoint `checkpoint` of `job`, a job of one operator, `counter` (module
/// `c` version 1, two subtasks), whose subtasks wrote `files`.
pub(super) fn counter_metadata(
    job: JobId,
    checkpoint: CheckpointId,
    kind: BarrierKind,
    counter: OperatorId,
    files: Vec<StateFile>,
) -> Metadata {
    Metadata {
        job,
        checkpoint,
        kind,
        completed_unix_ms: 0,
        job_file: String::new(),
        max_parallelism: 128,
        key_group_function: KEY_GROUP_FUNCTION.to_owned(),
        state_layout: StateLayout::Timed,
        operators: vec![OperatorState {
            role: Role::Operator,
            id: counter,
            module_sha256: String::new(),
            module_name: "c".to_owned(),
            module_version: "1".to_owned(),
            parallelism: 2,
            files,
        }],
        definition: None,
        resumed_from: None,
        generation: None,
    }
}

#[test]
fn a_published_checkpoint_reads_back_verified() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("home")).unwrap();
    let (metadata, dir) = write_point(&store, 1, BarrierKind::Checkpoint);
    let point = store.read_point(&dir).unwrap();
    assert_eq!(point.metadata, metadata);
    let states = store.read_states(&point).unwrap();
    assert_eq!(states[&("counter".parse().unwrap(), 1)], operator_state(1));
    assert_eq!(store.checkpoints(&job()).unwrap(), [CheckpointId(1)]);
    assert!(!store.layout().in_progress(&job(), CheckpointId(1)).exists());
}

#[test]
fn a_state_file_that_changed_is_refused_with_its_path() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (_, dir) = write_point(&store, 1, BarrierKind::Savepoint);
    let victim = dir.join("counter-1.state");
    // As long as the file (its operator state's length and bytes, no watermark, no segment).
    fs::write(&victim, b"state XXXX").unwrap();
    let point = store.read_point(&dir).unwrap();
    let error = store.read_states(&point).unwrap_err().to_string();
    assert!(
        error.contains("counter-1.state") && error.contains("checksum mismatch"),
        "{error}"
    );
    fs::write(&victim, b"state").unwrap();
    let error = store.read_states(&point).unwrap_err().to_string();
    assert!(error.contains("5 bytes, metadata says 10"), "{error}");
}

#[test]
fn a_missing_state_file_is_reported_before_a_damaged_one() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (_, dir) = write_point(&store, 1, BarrierKind::Savepoint);
    fs::write(dir.join("counter-0.state"), b"state").unwrap();
    fs::remove_file(dir.join("counter-1.state")).unwrap();
    let point = store.read_point(&dir).unwrap();
    let error = store.read_states(&point).unwrap_err().to_string();
    assert!(
        error.contains("counter-1.state") && error.contains("No such file"),
        "{error}"
    );
}

#[test]
fn a_folder_without_metadata_is_not_a_point() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let error = store.read_point(root.path()).unwrap_err();
    assert!(matches!(error, StoreError::NotAPoint { .. }), "{error}");
}

#[test]
fn removing_checkpoints_leaves_savepoints_alone() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    write_point(&store, 1, BarrierKind::Savepoint);
    for n in 2..=4 {
        write_point(&store, n, BarrierKind::Checkpoint);
    }
    store
        .remove_checkpoints(&job(), &[CheckpointId(2), CheckpointId(3)])
        .unwrap();
    assert_eq!(store.checkpoints(&job()).unwrap(), [CheckpointId(4)]);
    assert_eq!(store.savepoint_ids().unwrap().len(), 1);
}

#[test]
fn the_state_folder_is_owner_only() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("home")).unwrap();
    let mode = fs::metadata(store.layout().root())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn a_folder_named_as_the_state_folder_keeps_its_mode() {
    let root = tempfile::tempdir().unwrap();
    let home = root.path().join("home");
    fs::create_dir(&home).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o750)).unwrap();
    Store::open(&home).unwrap();
    let mode = fs::metadata(&home).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o750,
        "the host changed the mode of a folder it did not make"
    );
}

/// Keyed state of subtask 0 with group 1 whole, changed by a delta at each later checkpoint.
pub(super) fn keyed(states: &mut BTreeMap<u32, Held>, n: u64) {
    let held = states.entry(0).or_default();
    let changed = match n {
        1 => vec![(1, false, b"group 1, whole".to_vec())],
        n => vec![(1, true, format!("delta {n}").into_bytes())],
    };
    held.merge(0..u32::MAX, vec![], changed, false).unwrap();
}

#[test]
fn a_checkpoint_writes_only_new_pieces_and_links_the_rest_each_point_self_contained() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let mut states = BTreeMap::new();
    let mut dirs = Vec::new();
    for n in 1..=3 {
        keyed(&mut states, n);
        dirs.push(write_states(&store, n, BarrierKind::Checkpoint, &mut states).1);
    }
    let first = Layout::segment_file_name(&job(), CheckpointId(1), "counter", 0);
    let third = Layout::segment_file_name(&job(), CheckpointId(3), "counter", 0);
    let written = fs::read(dirs[2].join(&third)).unwrap();
    assert!(
        written.starts_with(b"delta 3") && written.len() < 7 + 60,
        "only the new piece, and its table: {written:?}"
    );
    let inode = |dir: &Path| fs::metadata(dir.join(&first)).unwrap().ino();
    assert_eq!(
        inode(&dirs[0]),
        inode(&dirs[2]),
        "the first segment is linked, not copied"
    );
    // Removing the earlier points leaves the last one whole.
    store
        .remove_checkpoints(&job(), &[CheckpointId(1), CheckpointId(2)])
        .unwrap();
    let point = store.read_point(&dirs[2]).unwrap();
    let read = store.read_states(&point).unwrap();
    assert_eq!(read[&("counter".parse().unwrap(), 0)], states[&0]);
}

#[test]
fn a_segment_that_cannot_be_linked_is_written_again_and_a_damaged_one_is_named() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let mut states = BTreeMap::new();
    keyed(&mut states, 1);
    let (_, first) = write_states(&store, 1, BarrierKind::Checkpoint, &mut states);
    fs::remove_dir_all(&first).unwrap();
    keyed(&mut states, 2);
    let (_, second) = write_states(&store, 2, BarrierKind::Checkpoint, &mut states);
    let point = store.read_point(&second).unwrap();
    assert_eq!(
        store.read_states(&point).unwrap()[&("counter".parse().unwrap(), 0)],
        states[&0]
    );
    let segment = second.join(Layout::segment_file_name(
        &job(),
        CheckpointId(1),
        "counter",
        0,
    ));
    let mut damaged = fs::read(&segment).unwrap();
    damaged[8] ^= 0x20;
    fs::write(&segment, damaged).unwrap();
    let error = store.read_states(&point).unwrap_err().to_string();
    assert!(
        error.contains(&*segment.to_string_lossy())
            && error.contains("does not match its checksum"),
        "{error}"
    );
}

#[test]
fn a_segment_over_the_size_limit_is_refused_unread() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let mut states = BTreeMap::new();
    keyed(&mut states, 1);
    let (_, dir) = write_states(&store, 1, BarrierKind::Checkpoint, &mut states);
    let name = Layout::segment_file_name(&job(), CheckpointId(1), "counter", 0);
    let segment = dir.join(name);
    // Sparse: 4 GiB and one byte that take no room on the disk, and would in memory.
    let max = super::metadata::SEGMENT_BYTES_MAX;
    fs::File::options()
        .write(true)
        .open(&segment)
        .unwrap()
        .set_len(max + 1)
        .unwrap();
    let point = store.read_point(&dir).unwrap();
    let error = store.read_states(&point).unwrap_err().to_string();
    assert!(
        error.contains(&*segment.to_string_lossy())
            && error.contains(&format!("larger than any segment ({max} bytes at most)")),
        "{error}"
    );
}

#[test]
fn a_state_file_over_the_size_limit_is_refused_before_it_is_read() {
    let max = super::metadata::STATE_FILE_BYTES_MAX;
    let id: OperatorId = "counter".parse().unwrap();
    let file = |len| StateFile {
        subtask: 0,
        file: "counter-0.state".to_owned(),
        len,
        checksum: [0; 16],
    };
    let path_of = |f: &StateFile| PathBuf::from(&f.file);
    let (under, over) = (file(max), file(max + 1));
    let lens = super::verify_lengths(&[(&id, &under)], vec![Ok(max)], &path_of).unwrap();
    assert_eq!(lens, [max]);
    let error = super::verify_lengths(&[(&id, &over)], vec![Ok(max + 1)], &path_of);
    let error = error.unwrap_err().to_string();
    assert!(error.contains("larger than any state file"), "{error}");
}

#[test]
fn metadata_over_the_size_limit_is_refused_before_it_is_read() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (_, dir) = write_point(&store, 1, BarrierKind::Checkpoint);
    // A sparse file: its length claims more than the limit, its blocks hold almost nothing.
    let file = fs::OpenOptions::new()
        .write(true)
        .open(dir.join(METADATA_FILE))
        .unwrap();
    file.set_len(super::metadata::METADATA_BYTES_MAX + 1)
        .unwrap();
    // Read, it would fail its checksum: refused by its length, it names the limit.
    let error = store.read_point(&dir).unwrap_err().to_string();
    let limit = super::metadata::METADATA_BYTES_MAX.to_string();
    assert!(
        error.contains("larger than any checkpoint metadata") && error.contains(&limit),
        "{error}"
    );
}
