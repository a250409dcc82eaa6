use super::*;
use crate::barrier::BarrierKind;
use crate::ids::Role;
use crate::key_group::KEY_GROUP_FUNCTION;

fn job() -> JobId {
    "job-test".parse().unwrap()
}

/// Writes a two-subtask checkpoint `n` of operator `counter` and publishes it.
fn write_point(store: &Store, n: u64, kind: BarrierKind) -> (Metadata, PathBuf) {
    let counter: OperatorId = "counter".parse().unwrap();
    let files = (0..2)
        .map(|s| {
            store
                .write_state(
                    &job(),
                    CheckpointId(n),
                    &counter,
                    s,
                    format!("state {s}").as_bytes(),
                )
                .unwrap()
        })
        .collect();
    let metadata = Metadata {
        job: job(),
        checkpoint: CheckpointId(n),
        kind,
        completed_unix_ms: 0,
        job_file: String::new(),
        max_parallelism: 128,
        key_group_function: KEY_GROUP_FUNCTION.to_owned(),
        state_layout: StateLayout::Chained,
        operators: vec![OperatorState {
            role: Role::Operator,
            id: counter,
            module_sha256: "00".repeat(32),
            module_name: "c".to_owned(),
            module_version: "1".to_owned(),
            parallelism: 2,
            files,
        }],
    };
    let dir = match kind {
        BarrierKind::Checkpoint => store.complete_checkpoint(&metadata).unwrap(),
        BarrierKind::Savepoint => store
            .complete_savepoint(&metadata, &SavepointId::generate(&job(), CheckpointId(n)))
            .unwrap(),
    };
    (metadata, dir)
}

#[test]
fn a_published_checkpoint_reads_back_verified() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path().join("home")).unwrap();
    let (metadata, dir) = write_point(&store, 1, BarrierKind::Checkpoint);
    let point = store.read_point(&dir).unwrap();
    assert_eq!(point.metadata, metadata);
    let states = store.read_states(&point).unwrap();
    assert_eq!(states[&("counter".parse().unwrap(), 1)], b"state 1");
    assert_eq!(store.checkpoints(&job()).unwrap(), [CheckpointId(1)]);
    assert!(!store.layout().in_progress(&job(), CheckpointId(1)).exists());
}

#[test]
fn a_state_file_that_changed_is_refused_with_its_path() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path()).unwrap();
    let (_, dir) = write_point(&store, 1, BarrierKind::Savepoint);
    let victim = dir.join("counter-1.state");
    fs::write(&victim, b"state X").unwrap();
    let point = store.read_point(&dir).unwrap();
    let error = store.read_states(&point).unwrap_err().to_string();
    assert!(
        error.contains("counter-1.state") && error.contains("checksum mismatch"),
        "{error}"
    );
    fs::write(&victim, b"state").unwrap();
    let error = store.read_states(&point).unwrap_err().to_string();
    assert!(error.contains("5 bytes, metadata says 7"), "{error}");
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
