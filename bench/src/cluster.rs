//! Beyond one process (issue 35): the peer job on `host worker` processes, and the exchange's
//! cost over loopback.
//!
//! 1. The peer job (generator -> key-by -> counter-v1 -> null sink, every operator at
//!    parallelism N) as a user runs it: `host run JOB --workers N` (the coordinator and N
//!    `host worker` processes it starts, the job's channels between workers over the exchange),
//!    timed from the command's start to its exit, against `host run JOB` of the same file (every
//!    subtask in one process), for N = 1, 2, 3; the fastest of the runs of each, alternated.
//!    A first run of each, unmeasured, compiles the modules into the state folder's cache.
//! 2. The exchange: batches of 1 024 records from a local channel through the outbound link,
//!    a loopback TCP connection and the inbound link into the downstream local channel, read
//!    there (Arrow IPC frames, credit back), against a raw TCP copy over loopback of the same
//!    bytes (the batches' columns, one write a batch), both on this process's runtime. Small
//!    records give the cost per record; records with 1 KiB values the cost per byte.

use std::future::poll_fn;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use host::cluster::exchange::{Exchange, LinkHello, inbound, outbound};
use host::engine::bindings::Batch;
use host::metrics::SubtaskCounters;
use host::runtime::ChannelId;
use host::runtime::channel::{Message, channel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::batches::BatchOf;
use crate::jobs::{fastest, peer_text_at};
use crate::process::host_run;
use crate::{Row, Sizes};

/// The peer job on N worker processes against one process, N = 1, 2, 3.
pub fn workers(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("workers");
    std::fs::create_dir_all(&dir)?;
    let home = dir.join("home");
    let (records, keys) = (sizes.worker_records, sizes.distinct_keys);
    let mut rows = Vec::new();
    for n in [1, 2, 3] {
        let file = dir.join(format!("peer-{n}.toml"));
        let workers_flag = ["--workers".to_owned(), n.to_string()];
        std::fs::write(&file, peer_text_at(guests, records, keys, 0, n))?;
        if n == 1 {
            // Unmeasured: compiles the modules into the cache, for every run that follows.
            host_run(&home, &file, &workers_flag)?;
        }
        let (mut one, mut spread) = (Vec::new(), Vec::new());
        for run in 0..sizes.repetitions.min(3) {
            if run % 2 == 0 {
                one.push(host_run(&home, &file, &[])?);
                spread.push(host_run(&home, &file, &workers_flag)?);
            } else {
                spread.push(host_run(&home, &file, &workers_flag)?);
                one.push(host_run(&home, &file, &[])?);
            }
        }
        let rate = |d: Duration| records as f64 / d.as_secs_f64();
        let (workers, local) = (rate(fastest(&spread)), rate(fastest(&one)));
        rows.push(Row {
            name: format!(
                "peer job (generator, key-by, keyed count, null sink) at parallelism {n} on {n} \
                 `host worker` process{}, {} k records over {} k keys: `host run --workers {n}` \
                 from its start to its exit (workers started and joined included), fastest of {}",
                if n == 1 { "" } else { "es" },
                records / 1_000,
                keys / 1_000,
                spread.len()
            ),
            value: workers,
            unit: "records/s",
            baseline: Some(local),
            baseline_name: "`host run` of the same job file, every subtask in its one process, \
                            timed alike, runs alternated",
            ratio: Some(workers / local),
            target: "",
            met: None,
        });
    }
    Ok(rows)
}

/// `count` batches of 1 024 records `k<n>` with values of `value_bytes` bytes.
fn batches(count: usize, value_bytes: usize) -> Vec<Batch> {
    let value = vec![b'v'; value_bytes];
    (0..count)
        .map(|b| {
            let mut batch = BatchOf::new(true);
            for i in 0..1_024 {
                let n = b * 1_024 + i;
                batch.push(format!("k{n}").as_bytes(), &value, n as i64);
            }
            batch.finish()
        })
        .collect()
}

/// The bytes of a batch's columns: what the raw copy sends of it.
fn column_bytes(batch: &Batch) -> Vec<u8> {
    let mut bytes = batch.keys.clone();
    bytes.extend(batch.key_ends.iter().flat_map(|e| e.to_le_bytes()));
    bytes.extend_from_slice(&batch.values);
    bytes.extend(batch.value_ends.iter().flat_map(|e| e.to_le_bytes()));
    bytes.extend(batch.timestamps.iter().flat_map(|t| t.to_le_bytes()));
    bytes.extend(batch.key_groups.iter().flat_map(|g| g.to_le_bytes()));
    bytes
}

/// Sends `batches` through the exchange over loopback and reads them downstream; returns the
/// time from the first send to the end's arrival.
async fn through_exchange(batches: Vec<Batch>) -> anyhow::Result<Duration> {
    let exchange = Exchange::bind("127.0.0.1:0".parse()?, "bench").await?;
    let channel_id = ChannelId {
        edge: 0,
        from: 0,
        to: 0,
    };
    let (up_tx, up_rx) = channel(host::runtime::CHANNEL_RECORDS_MAX);
    let (down_tx, mut down_rx) = channel(host::runtime::CHANNEL_RECORDS_MAX);
    let connection = exchange.expect(1, channel_id);
    let downstream = tokio::spawn(async move { inbound(connection, &down_tx).await });
    let hello = LinkHello {
        token: "bench".to_owned(),
        generation: 1,
        channel: channel_id,
    };
    let upstream = tokio::spawn(outbound(exchange.addr(), hello, up_rx));
    let reader = tokio::spawn(async move {
        let mut records = 0;
        while let Some(message) = poll_fn(|cx| down_rx.poll_recv(cx)).await {
            match message {
                Message::Batch(batch) => records += batch.timestamps.len(),
                Message::End => break,
                _ => {}
            }
        }
        records
    });
    let (counters, sent) = (SubtaskCounters::default(), batches.len() * 1_024);
    let started = Instant::now();
    for batch in batches {
        up_tx
            .send_batch(batch, &counters)
            .await
            .ok()
            .context("upstream closed")?;
    }
    up_tx
        .send_control(Message::End)
        .ok()
        .context("upstream closed")?;
    let received = reader.await?;
    let took = started.elapsed();
    upstream.await??;
    downstream.await??;
    anyhow::ensure!(
        received == sent,
        "the exchange delivered {received} of {sent} records"
    );
    Ok(took)
}

/// Copies `chunks` over a loopback TCP connection, one write a chunk, and reads them all;
/// returns the time from the first write to the last byte's arrival.
async fn raw_copy(chunks: Vec<Vec<u8>>) -> anyhow::Result<Duration> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let total: usize = chunks.iter().map(Vec::len).sum();
    let reader = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await?;
        let mut buffer = vec![0; 1 << 16];
        let mut read = 0;
        while read < total {
            match stream.read(&mut buffer).await? {
                0 => break,
                n => read += n,
            }
        }
        std::io::Result::Ok(read)
    });
    let mut stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let started = Instant::now();
    for chunk in &chunks {
        stream.write_all(chunk).await?;
    }
    let read = reader.await??;
    let took = started.elapsed();
    anyhow::ensure!(
        read == total,
        "the raw copy delivered {read} of {total} bytes"
    );
    Ok(took)
}

/// One exchange workload: `batches` of 1 024 records with values of `value_bytes`; the
/// exchange's time and the raw copy's, fastest of `repetitions` each, alternated.
async fn exchange_against_raw(
    count: usize,
    value_bytes: usize,
    repetitions: usize,
) -> anyhow::Result<(Duration, Duration, usize)> {
    let made = batches(count, value_bytes);
    let chunks: Vec<Vec<u8>> = made.iter().map(column_bytes).collect();
    let bytes = chunks.iter().map(Vec::len).sum();
    let (mut exchanged, mut copied) = (Vec::new(), Vec::new());
    for _ in 0..repetitions {
        exchanged.push(through_exchange(made.clone()).await?);
        copied.push(raw_copy(chunks.clone()).await?);
    }
    Ok((fastest(&exchanged), fastest(&copied), bytes))
}

/// The exchange's cost per record (small records) and per byte (1 KiB values) over loopback,
/// against a raw TCP copy of the same bytes.
pub async fn exchange(sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let repetitions = sizes.repetitions.min(3);
    let small = sizes.exchange_records / 1_024;
    let (exchanged, copied, bytes) = exchange_against_raw(small, 0, repetitions).await?;
    let records = (small * 1_024) as f64;
    let per_record = |d: Duration| d.as_secs_f64() * 1e9 / records;
    let mut rows = vec![Row {
        name: format!(
            "exchange over loopback, {} k records of {:.0} bytes (keys only) in batches of \
             1 024: local channel -> outbound link -> TCP -> inbound link -> local channel, \
             read; first send to the end's arrival, fastest of {repetitions}",
            small * 1_024 / 1_000,
            bytes as f64 / records
        ),
        value: per_record(exchanged),
        unit: "ns/record",
        baseline: Some(per_record(copied)),
        baseline_name: "a raw TCP copy over loopback of the same batches' column bytes, one \
                        write a batch, same runtime",
        ratio: Some(per_record(copied) / per_record(exchanged)),
        target: "",
        met: None,
    }];
    let large = (sizes.exchange_records / 16).max(1_024) / 1_024;
    let (exchanged, copied, bytes) = exchange_against_raw(large, 1_024, repetitions).await?;
    let per_byte = |d: Duration| d.as_secs_f64() * 1e9 / bytes as f64;
    rows.push(Row {
        name: format!(
            "exchange over loopback, {} MiB in {} k records with 1 KiB values, in batches of \
             1 024 (as above)",
            bytes >> 20,
            large * 1_024 / 1_000
        ),
        value: per_byte(exchanged),
        unit: "ns/byte",
        baseline: Some(per_byte(copied)),
        baseline_name: "a raw TCP copy over loopback of the same bytes, one write a batch",
        ratio: Some(per_byte(copied) / per_byte(exchanged)),
        target: "",
        met: None,
    });
    Ok(rows)
}
