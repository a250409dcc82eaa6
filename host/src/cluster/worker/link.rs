//! A worker's connection to its coordinator: the hello and its welcome (the lease granted as
//! of the hello), the pings every beat, and the reader that renews the lease by each pong, as
//! of when its ping was sent, and passes every other message on.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

use super::WorkerConfig;
use crate::cluster::wire::{self, FromWorker, Hello, ToWorker, Welcome, WireError};
use crate::runtime::lease::Lease;

/// The pings sent and not yet answered: their numbers and when they were sent.
pub(super) type Pings = Arc<Mutex<VecDeque<(u64, Instant)>>>;

/// What the control connection brings: a message, or its end (with why, if it failed).
pub(super) type Said = Result<Option<ToWorker>, WireError>;

/// A worker's connection to its coordinator, welcomed.
pub(super) struct Joined {
    pub(super) read: tokio::io::BufReader<OwnedReadHalf>,
    pub(super) write: OwnedWriteHalf,
    pub(super) welcome: Welcome,
    /// Granted as of the hello.
    pub(super) lease: Lease,
}

/// Connects to the coordinator and says hello; the connection, its welcome, and the lease
/// it grants as of the hello.
pub(super) async fn join(config: &WorkerConfig, reached: SocketAddr) -> Result<Joined, WireError> {
    let stream = TcpStream::connect(config.coordinator).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    let hello = Hello {
        token: config.token.clone(),
        name: config.name.clone(),
        exchange: reached,
    };
    let said_hello = Instant::now();
    wire::write(&mut write, &hello).await?;
    let closed = || std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
    let welcome: Welcome = wire::read(&mut read).await?.ok_or_else(closed)?;
    let lease = Lease::new(said_hello, Duration::from_millis(welcome.lease_ms));
    Ok(Joined {
        read,
        write,
        welcome,
        lease,
    })
}

/// Writes `outgoing` to the coordinator's connection until it fails.
pub(super) async fn send_out(
    mut write: OwnedWriteHalf,
    mut outgoing: mpsc::UnboundedReceiver<FromWorker>,
) {
    while let Some(message) = outgoing.recv().await {
        if wire::write(&mut write, &message).await.is_err() {
            break;
        }
    }
}

/// Pings the coordinator every `ping_ms`, noting when each ping was sent.
pub(super) async fn ping(out: mpsc::UnboundedSender<FromWorker>, pings: Pings, ping_ms: u64) {
    let mut beat = tokio::time::interval(Duration::from_millis(ping_ms.max(1)));
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for n in 1.. {
        beat.tick().await;
        pings
            .lock()
            .expect("not poisoned")
            .push_back((n, Instant::now()));
        if out.send(FromWorker::Ping(n)).is_err() {
            return;
        }
    }
}

/// Reads the coordinator's connection: each pong renews `lease` as of when its ping was
/// sent; every other message goes to `said`, then its end.
pub(super) async fn read_in(
    mut read: tokio::io::BufReader<OwnedReadHalf>,
    said: mpsc::UnboundedSender<Said>,
    lease: Lease,
    pings: Pings,
) {
    loop {
        let message = wire::read::<_, ToWorker>(&mut read).await;
        if let Ok(Some(ToWorker::Pong(n))) = message {
            let mut pings = pings.lock().expect("not poisoned");
            while let Some(&(sent_n, sent)) = pings.front().filter(|(m, _)| *m <= n) {
                pings.pop_front();
                if sent_n == n {
                    lease.renew(sent);
                }
            }
            continue;
        }
        let ended = !matches!(message, Ok(Some(_)));
        if said.send(message).is_err() || ended {
            return;
        }
    }
}
