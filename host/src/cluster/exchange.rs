//! The exchange: channels between subtasks on different workers, over TCP.
//!
//! A record's hop between processes. One connection per channel that crosses workers. The
//! upstream worker's outbound link ([`outbound`]) drains the local channel its subtask sends
//! into and writes each message as a frame ([`codec`]); the downstream worker's inbound link
//! ([`inbound`]) reads them and feeds its subtask's local channel. Credit, in records, flows
//! back on the same connection: the inbound link grants a window at first and grants each
//! batch's records again once its local channel took the batch, and the outbound link takes
//! a batch from its local channel only with credit for it (a batch larger than the window
//! passes alone, as in [`crate::runtime::channel`]). Barriers, watermarks, idleness and the
//! end travel in order with the batches and need no credit.
//!
//! Every worker has one listener ([`Exchange`]); a connection opens with a hello naming the
//! cluster's token, the generation and the channel, and goes to the inbound link that expects
//! that channel of that generation, or is closed.

pub mod codec;

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, oneshot};

use super::wire;
use crate::metrics::SubtaskCounters;
use crate::runtime::CHANNEL_RECORDS_MAX;
use crate::runtime::ChannelId;
use crate::runtime::channel::{Message, Receiver, Sender, batch_len};
use codec::{CodecError, Decoder, Encoder, FRAME_BYTES_MAX, Kind};

/// The first frame of an exchange connection (a [`wire`] frame).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LinkHello {
    /// The cluster's secret.
    pub token: String,
    /// The deployment's generation.
    pub generation: u64,
    /// The channel.
    pub channel: ChannelId,
}

/// Why a link failed.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// The connection failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The hello could not be sent.
    #[error("{0}")]
    Wire(#[from] wire::WireError),
    /// A frame could not be encoded or decoded.
    #[error("{0}")]
    Codec(#[from] CodecError),
    /// A frame of an unknown kind, or over the size limit.
    #[error("a frame of kind {kind} and {len} bytes")]
    BadFrame {
        /// Its kind byte.
        kind: u8,
        /// Its length.
        len: u32,
    },
    /// The connection closed before the channel's end.
    #[error("the connection closed before the channel's end")]
    Cut,
}

/// Records a batch takes of a channel's credit (as [`crate::runtime::channel`] counts).
fn credit_for(records: usize) -> u32 {
    (records as u32).clamp(1, CHANNEL_RECORDS_MAX)
}

/// A worker's exchange listener: hands each incoming connection to the inbound link that
/// expects it.
#[derive(Clone)]
pub struct Exchange {
    addr: SocketAddr,
    token: Arc<str>,
    slots: Arc<Mutex<Slots>>,
}

/// The inbound links waiting for their connection, by generation and channel.
type Slots = HashMap<(u64, ChannelId), oneshot::Sender<BufReader<TcpStream>>>;

impl Exchange {
    /// Listens on `addr` (port 0: any) for connections presenting `token`.
    pub async fn bind(addr: SocketAddr, token: &str) -> std::io::Result<Exchange> {
        let listener = TcpListener::bind(addr).await?;
        let exchange = Exchange {
            addr: listener.local_addr()?,
            token: token.into(),
            slots: Arc::default(),
        };
        let accepting = exchange.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(accepting.clone().hand_over(stream));
            }
        });
        Ok(exchange)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection of `channel` in `generation`, once its upstream worker opens it.
    pub fn expect(
        &self,
        generation: u64,
        channel: ChannelId,
    ) -> oneshot::Receiver<BufReader<TcpStream>> {
        let (tx, rx) = oneshot::channel();
        let mut slots = self.slots.lock().expect("not poisoned");
        slots.insert((generation, channel), tx);
        rx
    }

    /// Forgets the channels of every generation up to `generation`.
    pub fn forget(&self, generation: u64) {
        let mut slots = self.slots.lock().expect("not poisoned");
        slots.retain(|(g, _), _| *g > generation);
    }

    async fn hand_over(self, stream: TcpStream) {
        let mut stream = BufReader::new(stream);
        let hello: Option<LinkHello> = match wire::read(&mut stream).await {
            Ok(hello) => hello,
            Err(e) => {
                tracing::warn!("exchange: a connection refused: {e}");
                return;
            }
        };
        let Some(hello) = hello.filter(|h| wire::same_token(&h.token, &self.token)) else {
            tracing::warn!("exchange: a connection without the cluster's token refused");
            return;
        };
        let key = (hello.generation, hello.channel);
        let slot = self.slots.lock().expect("not poisoned").remove(&key);
        match slot {
            Some(slot) => drop(slot.send(stream)),
            None => tracing::warn!(
                generation = hello.generation,
                channel = ?hello.channel,
                "exchange: a connection for no expected channel refused"
            ),
        }
    }
}

async fn write_frame(
    to: &mut BufWriter<OwnedWriteHalf>,
    kind: Kind,
    parts: &[&[u8]],
) -> Result<(), LinkError> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len)
        .ok()
        .filter(|&l| l <= FRAME_BYTES_MAX)
        .ok_or(LinkError::BadFrame {
            kind: kind as u8,
            len: u32::MAX,
        })?;
    to.write_u8(kind as u8).await?;
    to.write_all(&len.to_le_bytes()).await?;
    for part in parts {
        to.write_all(part).await?;
    }
    Ok(())
}

/// Reads one frame; `None` at a clean end of the connection.
async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    from: &mut R,
) -> Result<Option<(Kind, Vec<u8>)>, LinkError> {
    let kind = match from.read_u8().await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    };
    let len = from.read_u32_le().await?;
    let kind = Kind::of(kind)
        .filter(|_| len <= FRAME_BYTES_MAX)
        .ok_or(LinkError::BadFrame { kind, len })?;
    let mut payload = vec![0; len as usize];
    from.read_exact(&mut payload).await?;
    Ok(Some((kind, payload)))
}

/// The upstream side of a channel that crosses workers: connects to the downstream worker's
/// exchange at `addr`, then writes what the upstream subtask sends into `rx`, as the
/// downstream's credit allows, until the channel's end. A receiver that goes away (or a
/// failure) drops `rx`: the upstream subtask then finds its channel closed.
pub async fn outbound(addr: SocketAddr, hello: LinkHello, rx: Receiver) -> Result<(), LinkError> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut write = BufWriter::with_capacity(1 << 16, write);
    wire::write(&mut write, &hello).await?;
    let credits = Arc::new(Semaphore::new(0));
    let granting = tokio::spawn(take_credit(read, credits.clone()));
    let sent = drain(rx, &mut write, &credits).await;
    if sent.is_err() {
        granting.abort();
        return sent;
    }
    // A clean close: the receiver may still grant credit for the last batches; it closes its
    // side once it took the end, and only then is the connection dropped (dropping it with
    // credit unread would reset it under the receiver's feet).
    write.shutdown().await?;
    let _ = granting.await;
    Ok(())
}

/// Adds the credit the downstream grants, until the connection closes.
async fn take_credit(read: OwnedReadHalf, credits: Arc<Semaphore>) {
    let mut read = BufReader::new(read);
    while let Ok(Some((Kind::Credit, payload))) = read_frame(&mut read).await {
        let Ok(records) = <[u8; 4]>::try_from(&payload[..]) else {
            break;
        };
        credits.add_permits(u32::from_le_bytes(records) as usize);
    }
    // Wakes a send waiting for credit: it will find the connection gone.
    credits.close();
}

/// Writes every message of `rx` to `write`, each batch once it has credit; flushes whenever
/// it would wait.
async fn drain(
    mut rx: Receiver,
    write: &mut BufWriter<OwnedWriteHalf>,
    credits: &Semaphore,
) -> Result<(), LinkError> {
    let mut encoder = Encoder::default();
    loop {
        let ready = poll_fn(|cx| rx.poll_recv(cx)).now_or_never();
        let message = match ready {
            Some(message) => message,
            None => {
                write.flush().await?;
                poll_fn(|cx| rx.poll_recv(cx)).await
            }
        };
        // The upstream subtask is gone without an end: it failed, and says so itself.
        let Some(message) = message else {
            return Ok(());
        };
        match message {
            Message::Batch(batch) => {
                let credit = credit_for(batch_len(&batch));
                if credits.try_acquire_many(credit).is_err() {
                    write.flush().await?;
                }
                let permit = credits.acquire_many(credit).await;
                permit.map_err(|_| LinkError::Cut)?.forget();
                let (kind, buffers) = encoder.batch(batch)?;
                let parts: Vec<&[u8]> = buffers.iter().map(|b| b.as_slice()).collect();
                write_frame(write, kind, &parts).await?;
            }
            Message::End => {
                write_frame(write, Kind::End, &[]).await?;
                write.flush().await?;
                return Ok(());
            }
            control => {
                let (kind, payload) = codec::control(&control);
                write_frame(write, kind, &[&payload]).await?;
            }
        }
    }
}

/// The downstream side of a channel that crosses workers: once its upstream worker connects
/// (`connection`), feeds what arrives into `tx`, granting credit back as the downstream
/// subtask's channel takes each batch, until the channel's end.
///
/// On a failure it returns the error but keeps `tx` open (in the returned future's caller's
/// hands: see [`hold`]): a cut connection must not read as the end of the input.
pub async fn inbound(
    connection: oneshot::Receiver<BufReader<TcpStream>>,
    tx: &Sender,
) -> Result<(), LinkError> {
    let stream = connection.await.map_err(|_| LinkError::Cut)?;
    let (read, write) = stream.into_inner().into_split();
    let mut read = BufReader::with_capacity(1 << 16, read);
    let mut write = BufWriter::new(write);
    grant(&mut write, CHANNEL_RECORDS_MAX).await?;
    let counters = SubtaskCounters::default();
    let mut decoder = Decoder::default();
    loop {
        let Some((kind, payload)) = read_frame(&mut read).await? else {
            return Err(LinkError::Cut);
        };
        match kind {
            Kind::Batch | Kind::Grouped => {
                let batch = decoder.batch(kind, payload)?;
                let credit = credit_for(batch_len(&batch));
                // A downstream subtask that is gone failed, or the job is being stopped.
                tx.send_batch(batch, &counters)
                    .await
                    .map_err(|_| LinkError::Cut)?;
                grant(&mut write, credit).await?;
            }
            Kind::Credit => return Err(LinkError::BadFrame { kind: 7, len: 4 }),
            Kind::End => {
                let _ = tx.send_control(Message::End);
                return Ok(());
            }
            control => {
                let message = codec::decode_control(control, &payload)?;
                tx.send_control(message).map_err(|_| LinkError::Cut)?;
            }
        }
    }
}

async fn grant(write: &mut BufWriter<OwnedWriteHalf>, records: u32) -> Result<(), LinkError> {
    write_frame(write, Kind::Credit, &[&records.to_le_bytes()]).await?;
    write.flush().await?;
    Ok(())
}

/// Keeps `tx` open until the task holding it is stopped: after a failed inbound link, the
/// downstream subtask waits (its input neither ends nor delivers) until the coordinator,
/// told of the failure, stops the job.
pub async fn hold(tx: Sender) {
    std::future::pending::<()>().await;
    drop(tx);
}

#[cfg(test)]
mod tests;
