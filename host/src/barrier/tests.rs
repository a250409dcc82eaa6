use super::*;

fn barrier(n: u64) -> Barrier {
    Barrier {
        checkpoint: CheckpointId(n),
        kind: BarrierKind::Checkpoint,
        then_stop: false,
    }
}

fn subtask(op: &str, index: u32) -> SubtaskId {
    SubtaskId {
        operator: op.parse().unwrap(),
        index,
    }
}

#[test]
fn aligner_blocks_each_input_until_the_barrier_reached_all() {
    let mut aligner = Aligner::new(3);
    assert_eq!(aligner.on_barrier(1, barrier(1)), Alignment::Pending);
    assert!(aligner.is_blocked(1));
    assert!(!aligner.is_blocked(0));
    assert_eq!(aligner.on_barrier(0, barrier(1)), Alignment::Pending);
    assert_eq!(
        aligner.on_barrier(2, barrier(1)),
        Alignment::Aligned(barrier(1))
    );
    assert!((0..3).all(|i| !aligner.is_blocked(i)));
}

#[test]
fn aligner_does_not_wait_for_ended_inputs() {
    let mut aligner = Aligner::new(2);
    assert_eq!(aligner.on_barrier(0, barrier(4)), Alignment::Pending);
    assert_eq!(aligner.on_end(1), Alignment::Aligned(barrier(4)));
    assert_eq!(
        aligner.on_barrier(0, barrier(5)),
        Alignment::Aligned(barrier(5))
    );
    assert!(!aligner.all_ended());
    assert_eq!(aligner.on_end(0), Alignment::Pending);
    assert!(aligner.all_ended());
}

#[test]
#[should_panic(expected = "barriers are in order")]
fn aligner_asserts_barriers_arrive_in_order() {
    let mut aligner = Aligner::new(2);
    aligner.on_barrier(0, barrier(1));
    aligner.on_barrier(1, barrier(2));
}

#[test]
fn coordinator_completes_when_every_subtask_acked() {
    let subtasks = [subtask("a", 0), subtask("a", 1), subtask("b", 0)];
    let mut coordinator = Coordinator::new(subtasks.clone(), CheckpointId(7));
    let b = coordinator.trigger(BarrierKind::Savepoint, false).unwrap();
    assert_eq!(b.checkpoint, CheckpointId(7));
    assert!(
        coordinator
            .trigger(BarrierKind::Checkpoint, false)
            .is_none(),
        "one in flight"
    );
    // Each ack in turn, a duplicate among them, and what the coordinator says to it.
    let acks = [
        (0, Progress::Pending),
        (0, Progress::Pending),
        (2, Progress::Pending),
        (1, Progress::Complete(b)),
    ];
    for (i, (acked, progress)) in acks.into_iter().enumerate() {
        let said = coordinator.ack(b.checkpoint, &subtasks[acked]);
        assert_eq!(said, progress, "ack {i}, of subtask {}", subtasks[acked]);
    }
    assert_eq!(
        coordinator
            .trigger(BarrierKind::Checkpoint, false)
            .unwrap()
            .checkpoint,
        CheckpointId(8)
    );
}

#[test]
fn coordinator_ignores_acks_of_an_aborted_checkpoint() {
    let subtasks = [subtask("a", 0)];
    let mut coordinator = Coordinator::new(subtasks.clone(), CheckpointId(1));
    let b = coordinator.trigger(BarrierKind::Checkpoint, false).unwrap();
    assert_eq!(coordinator.abort(b.checkpoint), Some(b));
    assert_eq!(coordinator.ack(b.checkpoint, &subtasks[0]), Progress::Stale);
    assert!(!coordinator.is_busy());
}

#[test]
fn retention_keeps_the_newest() {
    let ids: Vec<_> = [5, 1, 3, 4, 2].map(CheckpointId).to_vec();
    assert_eq!(
        retention_victims(&ids, 3),
        [CheckpointId(1), CheckpointId(2)]
    );
    assert!(retention_victims(&ids, 10).is_empty());
}
