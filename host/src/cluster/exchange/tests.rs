use std::sync::atomic::{AtomicUsize, Ordering};

use jobhost_batch::BatchBuilder;

use super::*;
use crate::barrier::{Barrier, BarrierKind};
use crate::engine::bindings::Batch;
use crate::ids::CheckpointId;
use crate::runtime::channel::channel;

const TOKEN: &str = "secret";

fn batch(records: usize, first: usize) -> Batch {
    let mut builder = BatchBuilder::new();
    for i in first..first + records {
        let key = format!("k{i}");
        builder.push(key.as_bytes(), b"v", i as i64).unwrap();
    }
    crate::runtime::partition::into_batch(builder.finish(), vec![])
}

async fn recv(rx: &mut Receiver) -> Message {
    poll_fn(|cx| rx.poll_recv(cx)).await.expect("open")
}

/// An upstream local channel bridged over a loopback connection into a downstream one.
async fn bridge() -> (Sender, Receiver) {
    let exchange = Exchange::bind("127.0.0.1:0".parse().unwrap(), TOKEN)
        .await
        .unwrap();
    let id = ChannelId {
        edge: 0,
        from: 1,
        to: 2,
    };
    let (up_tx, up_rx) = channel_pair();
    let (down_tx, down_rx) = channel_pair();
    let connection = exchange.expect(3, id);
    tokio::spawn(async move { inbound(connection, &down_tx).await.expect("inbound") });
    let hello = LinkHello {
        token: TOKEN.to_owned(),
        generation: 3,
        channel: id,
    };
    tokio::spawn(outbound(exchange.addr(), hello, up_rx));
    (up_tx, down_rx)
}

#[tokio::test]
async fn batches_and_control_messages_cross_in_order() {
    let (tx, mut rx) = bridge().await;
    let counters = SubtaskCounters::default();
    let barrier = Barrier {
        checkpoint: CheckpointId(2),
        kind: BarrierKind::Checkpoint,
        then_stop: false,
    };
    tx.send_batch(batch(3, 0), &counters).await.unwrap();
    tx.send_control(Message::Watermark(9)).unwrap();
    tx.send_control(Message::Barrier(barrier)).unwrap();
    tx.send_batch(batch(2, 3), &counters).await.unwrap();
    tx.send_control(Message::Idle).unwrap();
    tx.send_control(Message::End).unwrap();
    assert!(matches!(recv(&mut rx).await, Message::Batch(b) if b.timestamps == [0, 1, 2]));
    assert!(matches!(recv(&mut rx).await, Message::Watermark(9)));
    assert!(matches!(recv(&mut rx).await, Message::Barrier(b) if b == barrier));
    assert!(matches!(recv(&mut rx).await, Message::Batch(b) if b.timestamps == [3, 4]));
    assert!(matches!(recv(&mut rx).await, Message::Idle));
    assert!(matches!(recv(&mut rx).await, Message::End));
}

#[tokio::test]
async fn a_downstream_that_takes_nothing_holds_the_upstream_within_three_windows() {
    let (tx, mut rx) = bridge().await;
    let batches = 100;
    let records = 1_024;
    let sent = Arc::new(AtomicUsize::new(0));
    let sending = sent.clone();
    let sender = tokio::spawn(async move {
        let counters = SubtaskCounters::default();
        for i in 0..batches {
            tx.send_batch(batch(records, i * records), &counters)
                .await
                .unwrap();
            sending.fetch_add(1, Ordering::SeqCst);
        }
        tx.send_control(Message::End).unwrap();
    });
    // The sender fills what credit allows: the upstream channel, the connection's window
    // (the batch the inbound link holds while the downstream channel is full among them) and
    // the downstream channel, a window each, plus the batch the outbound link holds while it
    // waits for credit. A link that granted credit before its channel took the batch would
    // let one more through.
    let bound = 3 * CHANNEL_RECORDS_MAX as usize / records + 1;
    while sent.load(Ordering::SeqCst) < bound - 2 {
        tokio::task::yield_now().await;
    }
    // However long it is given, it sends no more until the downstream takes some.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let held = sent.load(Ordering::SeqCst);
    assert!(held <= bound, "{held} batches sent, over {bound}");
    for i in 0..batches {
        let Message::Batch(b) = recv(&mut rx).await else {
            panic!("batch {i} missing");
        };
        assert_eq!(b.timestamps[0], (i * records) as i64);
    }
    assert!(matches!(recv(&mut rx).await, Message::End));
    sender.await.unwrap();
}

#[tokio::test]
async fn a_connection_without_the_token_reaches_no_channel() {
    let exchange = Exchange::bind("127.0.0.1:0".parse().unwrap(), TOKEN)
        .await
        .unwrap();
    let channel = ChannelId {
        edge: 0,
        from: 0,
        to: 0,
    };
    let connection = exchange.expect(1, channel);
    let (up_tx, up_rx) = channel_pair();
    up_tx
        .send_batch(batch(1, 0), &SubtaskCounters::default())
        .await
        .unwrap();
    let hello = LinkHello {
        token: "guess".to_owned(),
        generation: 1,
        channel,
    };
    // The listener closes the connection: the outbound link fails, waiting for credit.
    let sent = outbound(exchange.addr(), hello, up_rx).await;
    assert!(sent.is_err(), "{sent:?}");
    exchange.forget(1);
    assert!(connection.await.is_err(), "the slot was handed a stranger");
}

fn channel_pair() -> (Sender, Receiver) {
    channel(CHANNEL_RECORDS_MAX)
}
