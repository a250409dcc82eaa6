//! The store's decisions, tested on every back-end the callers may be given: points written,
//! retained and read back the same way in a folder and on an object store; and, where the
//! points are shared by several machines, the takeover, the generation fence, the abandoned
//! point that can never be published, and what `rm` and `gc` must leave to a job running
//! elsewhere. The object store here is an in-memory bucket
//! ([`super::object::ObjectPoints::in_memory`]): the same requests, conditional puts included,
//! that S3 answers, without a server. Two [`Store`]s on one bucket, each with a folder of its
//! own, are two machines.

use std::sync::Arc;

use super::object::ObjectPoints;
use super::tests::{counter_metadata, job, keyed, operator_state, status_of, write_states};
use super::*;
use crate::barrier::{BarrierKind, retention_victims};
use crate::ids::sha256_hex;

/// A machine: a state folder of its own, its points in a new bucket of memory.
fn machine() -> (tempfile::TempDir, Store) {
    let home = tempfile::tempdir().unwrap();
    let store = Store::open(home.path()).unwrap();
    let points = ObjectPoints::in_memory(store.layout().clone());
    (home, store.with_points(points))
}

/// Two machines whose points share one bucket.
fn two_machines() -> [(tempfile::TempDir, Store); 2] {
    let (a_home, b_home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b) = (Store::open(a_home.path()), Store::open(b_home.path()));
    let (a, b) = (a.unwrap(), b.unwrap());
    let points = ObjectPoints::in_memory(a.layout().clone());
    let shared = points.sharing(b.layout().clone());
    [
        (a_home, a.with_points(points)),
        (b_home, b.with_points(shared)),
    ]
}

/// One state folder with its points in it, and one with its points in memory; the test job
/// started on each.
fn every_backend() -> Vec<(tempfile::TempDir, Store)> {
    let local = tempfile::tempdir().unwrap();
    let store = Store::open(local.path()).unwrap();
    let backends = vec![(local, store), machine()];
    for (_, store) in &backends {
        start_job(store, Vec::new());
    }
    backends
}

/// Writes the states of checkpoint `n` of the test job (two subtasks) without publishing
/// them; returns the metadata that would publish them, with the generation the store holds
/// (as the coordinator records it).
fn write_unpublished(store: &Store, n: u64) -> Metadata {
    let counter: OperatorId = "counter".parse().unwrap();
    let files = (0..2)
        .map(|s| {
            let held = operator_state(s);
            let written = store.write_state(&job(), CheckpointId(n), &counter, s, &held);
            written.unwrap()
        })
        .collect();
    let kind = BarrierKind::Checkpoint;
    let metadata = counter_metadata(job(), CheckpointId(n), kind, counter, files);
    Metadata {
        generation: store.held_generation(&job()),
        ..metadata
    }
}

/// Starts the test job on `store`: its folder, its status and (where shared) its lease.
fn start_job(store: &Store, modules: Vec<String>) {
    let status = JobStatus {
        modules,
        ..status_of(&job())
    };
    store.create_job(&status, "", CheckpointId(1)).unwrap();
}

#[test]
fn retention_leaves_the_newest_checkpoints_and_every_savepoint_on_every_backend() {
    for (_home, store) in every_backend() {
        write_states(&store, 1, BarrierKind::Savepoint, &mut Default::default());
        let mut states = BTreeMap::new();
        for n in 2..=5 {
            keyed(&mut states, n - 1);
            write_states(&store, n, BarrierKind::Checkpoint, &mut states);
        }
        let victims = retention_victims(&store.checkpoints(&job()).unwrap(), 2);
        assert_eq!(victims, [CheckpointId(2), CheckpointId(3)]);
        store.remove_checkpoints(&job(), &victims).unwrap();
        assert_eq!(
            store.checkpoints(&job()).unwrap(),
            [CheckpointId(4), CheckpointId(5)]
        );
        assert_eq!(store.savepoint_ids().unwrap().len(), 1, "savepoints stay");
        // The newest point holds what its removed predecessors wrote of its state.
        let point = store.read_point(&store.layout().checkpoint(&job(), CheckpointId(5)));
        let read = store.read_states(&point.unwrap()).unwrap();
        assert_eq!(read[&("counter".parse().unwrap(), 0)], states[&0]);
    }
}

#[test]
fn an_aborted_checkpoint_is_never_listed_and_a_published_one_stays_on_every_backend() {
    for (_home, store) in every_backend() {
        write_unpublished(&store, 1);
        assert!(store.checkpoints(&job()).unwrap().is_empty(), "unpublished");
        store.abort(&job(), CheckpointId(1)).unwrap();
        let metadata = write_unpublished(&store, 2);
        store.complete_checkpoint(&metadata).unwrap();
        store.abort(&job(), CheckpointId(2)).unwrap();
        assert_eq!(store.checkpoints(&job()).unwrap(), [CheckpointId(2)]);
        let dir = store.layout().checkpoint(&job(), CheckpointId(2));
        let point = store.read_point(&dir).unwrap();
        assert_eq!(point.metadata, metadata);
        store.verify_states(&point).unwrap();
    }
}

#[test]
fn a_job_taken_over_can_publish_nothing_more_and_its_unpublished_point_is_removed() {
    let [(_a_home, a), (_b_home, b)] = two_machines();
    start_job(&a, Vec::new());
    let first = write_unpublished(&a, 1);
    a.complete_checkpoint(&first).unwrap();
    let second = write_unpublished(&a, 2);

    let holder = b.runs_elsewhere(&job()).unwrap();
    assert!(holder.is_some_and(|h| h.contains("job-test")), "A runs it");
    assert_eq!(a.runs_elsewhere(&job()).unwrap(), None, "A's own");
    b.take_over(&job()).unwrap();

    let fenced = a.complete_checkpoint(&second).unwrap_err();
    assert!(fenced.is_fenced(), "{fenced}");
    let third = write_unpublished(&a, 3);
    assert!(a.complete_checkpoint(&third).unwrap_err().is_fenced());
    assert_eq!(b.checkpoints(&job()).unwrap(), [CheckpointId(1)]);
    let abandoned = b.layout().checkpoint(&job(), CheckpointId(2));
    assert!(!b.has_point(&abandoned).unwrap());
    assert_eq!(b.point_bytes(&abandoned), 0, "its states removed");
    assert_eq!(b.runs_elsewhere(&job()).unwrap(), None, "no one runs it");
}

/// Machine A publishes checkpoint 1 while machine B takes its job over at `phase` of the
/// `_metadata` put; A's publish must fail fenced either way. Returns B, to see what stands.
fn publish_taken_over_at(phase: Phase) -> (Store, [tempfile::TempDir; 2]) {
    let [(a_home, a), (b_home, b)] = two_machines();
    let successor = b.clone();
    let hook: FaultHook = Arc::new(move |at, _| {
        if at == phase {
            successor.take_over(&job()).unwrap();
        }
        Ok(())
    });
    let a = a.with_faults(hook);
    start_job(&a, Vec::new());
    let metadata = write_unpublished(&a, 1);
    let error = a.complete_checkpoint(&metadata).unwrap_err();
    assert!(error.is_fenced(), "{error}");
    (b, [a_home, b_home])
}

#[test]
fn a_takeover_past_the_first_fence_check_leaves_no_point_without_its_states() {
    let (b, _homes) = publish_taken_over_at(Phase::MetadataWritten);
    let location = b.layout().checkpoint(&job(), CheckpointId(1));
    let unpublished = !b.has_point(&location).unwrap();
    assert!(unpublished, "abandoned, never published");
    assert!(b.checkpoints(&job()).unwrap().is_empty());
    let read = b.read_point(&location);
    assert!(
        matches!(read, Err(StoreError::NotAPoint { .. })),
        "{read:?}"
    );
}

#[test]
fn a_takeover_after_the_put_lets_the_point_stand_but_fences_its_commit() {
    let (b, _homes) = publish_taken_over_at(Phase::MetadataPut);
    // Published whole before the takeover listed the points: the successor's to resume from.
    assert_eq!(b.checkpoints(&job()).unwrap(), [CheckpointId(1)]);
    let point = b.read_point(&b.layout().checkpoint(&job(), CheckpointId(1)));
    b.verify_states(&point.unwrap()).unwrap();
}

#[test]
fn gc_elsewhere_keeps_the_modules_of_a_job_whose_lease_says_it_runs() {
    let [(_a_home, a), (_b_home, b)] = two_machines();
    let module = b"\0asm of a running job".to_vec();
    let sha = sha256_hex(&module);
    a.put_module(&sha, &module).unwrap();
    start_job(&a, vec![sha.clone()]);
    let collected = crate::points::gc::collect(&b, false).unwrap();
    assert!(collected.removed.is_empty(), "{collected:?}");
    assert_eq!(b.module_hashes().unwrap(), std::slice::from_ref(&sha));
    a.release_lease(&job()).unwrap();
    assert_eq!(b.runs_elsewhere(&job()).unwrap(), None, "ended");
    let collected = crate::points::gc::collect(&b, false).unwrap();
    assert_eq!(collected.removed, [sha], "nothing names it any more");
}

/// Machine A runs the test job and publishes checkpoints 1 and 2; someone who can write the
/// shared prefix (no lease, no fence) then copies checkpoint 2's files under number `planted`,
/// its `_metadata` rewritten by `forge`. Returns A's store and the location planted.
fn planted_beside_a_real_point(
    planted: u64,
    forge: impl FnOnce(&mut Metadata),
) -> (tempfile::TempDir, Store, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    let a = Store::open(home.path()).unwrap();
    let points = ObjectPoints::in_memory(a.layout().clone());
    let planter = points.sharing(a.layout().clone());
    let a = a.with_points(points);
    start_job(&a, Vec::new());
    for n in 1..=2 {
        let metadata = write_unpublished(&a, n);
        a.complete_checkpoint(&metadata).unwrap();
    }
    let real = a.layout().checkpoint(&job(), CheckpointId(2));
    let to = a.layout().checkpoint(&job(), CheckpointId(planted));
    for name in a.point_files(&real).unwrap() {
        planter.plant(&to.join(&name), a.read_point_file(&real, &name).unwrap());
    }
    let mut metadata = a.read_point(&real).unwrap().metadata;
    metadata.checkpoint = CheckpointId(planted);
    forge(&mut metadata);
    planter.plant(&to.join(METADATA_FILE), metadata::encode(&metadata));
    assert!(a.has_point(&to).unwrap(), "planted where a point would be");
    (home, a, to)
}

#[test]
fn a_planted_point_with_a_forged_generation_is_never_resumed_from_by_job_id() {
    use crate::points::savepoint::{RestorePoint, SavepointError, resolve};
    let e = fence::CHECKPOINT_EPOCH;
    // Generation 8, ahead of the lease (1), in its own epoch; generation 1 outside its epoch;
    // none recorded (as before format 5) in generation 8's epoch.
    for (number, forged) in [(7 * e + 2, Some(8)), (e + 2, Some(1)), (7 * e + 2, None)] {
        let (_home, a, planted) = planted_beside_a_real_point(number, |m| m.generation = forged);
        let real = a.layout().checkpoint(&job(), CheckpointId(2));
        let written = a.read_point(&real).unwrap().metadata.generation;
        assert_eq!(written, Some(1), "the generation of the writer's lease");
        let by_id = RestorePoint::Name(job().to_string());
        assert_eq!(resolve(&a, &by_id).unwrap(), real, "the real newest point");
        let by_number = RestorePoint::JobCheckpoint(job(), CheckpointId(number));
        let named = resolve(&a, &by_number);
        assert!(
            matches!(named, Err(SavepointError::NotFound(_))),
            "{named:?}"
        );
        assert!(a.has_point(&planted).unwrap(), "passed over, never deleted");
    }
}
