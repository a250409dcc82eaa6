//! How a subtask takes its inputs while it aligns a barrier: time waits with the records.

use std::future::poll_fn;
use std::task::Poll;

use super::*;
use crate::barrier::BarrierKind;
use crate::runtime::channel::{Sender, channel};

fn barrier() -> Barrier {
    Barrier {
        checkpoint: CheckpointId(1),
        kind: BarrierKind::Checkpoint,
        then_stop: false,
    }
}

/// What `next_message` gives at once, if anything.
async fn ready(inputs: &mut [Receiver], aligner: &Aligner) -> Option<(usize, String)> {
    let mut next = std::pin::pin!(next_message(inputs, aligner));
    let polled = poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await;
    match polled {
        Poll::Ready((input, message)) => Some((input, format!("{message:?}"))),
        Poll::Pending => None,
    }
}

fn send(sender: &Sender, message: Message) {
    sender.send_control(message).unwrap();
}

#[tokio::test]
async fn a_watermark_behind_a_barrier_waits_with_its_input_until_the_barrier_is_aligned() {
    let (senders, mut inputs): (Vec<Sender>, Vec<Receiver>) = (0..2).map(|_| channel(8)).unzip();
    let mut aligner = Aligner::new(2);
    send(&senders[0], Message::Barrier(barrier()));
    send(&senders[0], Message::Watermark(50));
    send(&senders[1], Message::Watermark(30));
    let first = ready(&mut inputs, &aligner).await;
    assert_eq!(
        first,
        Some((0, format!("{:?}", Message::Barrier(barrier()))))
    );
    assert_eq!(aligner.on_barrier(0, barrier()), Alignment::Pending);
    // Input 0 delivered the barrier: its watermark waits behind it, input 1's comes.
    let second = ready(&mut inputs, &aligner).await;
    assert_eq!(second, Some((1, "Watermark(30)".to_owned())));
    assert_eq!(ready(&mut inputs, &aligner).await, None, "input 0 is held");
    send(&senders[1], Message::Barrier(barrier()));
    let aligned = ready(&mut inputs, &aligner).await.map(|(input, _)| input);
    assert_eq!(aligned, Some(1));
    assert_eq!(
        aligner.on_barrier(1, barrier()),
        Alignment::Aligned(barrier())
    );
    let released = ready(&mut inputs, &aligner).await;
    assert_eq!(released, Some((0, "Watermark(50)".to_owned())));
}
