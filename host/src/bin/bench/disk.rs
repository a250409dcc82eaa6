//! Savepoint bandwidth: writing state through the store (fsynced files, metadata, atomic
//! publish) and restoring it (every checksum verified), against raw sequential writes with
//! fsync and reads of the same bytes on the same disk. Before each read the files are evicted
//! from the page cache, so that both reads measure the disk.

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use host::barrier::BarrierKind;
use host::ids::{CheckpointId, JobId, OperatorId};
use host::store::{Metadata, OperatorState, Store};

use crate::{Row, Sizes};

/// Size of one state blob (one subtask's state).
const BLOB_BYTES: usize = 64 << 20;

/// Drops `path`'s pages from the page cache (they are clean once fsynced), so that the next read
/// comes from the disk rather than from memory.
fn evict(path: &Path) -> anyhow::Result<()> {
    let file = File::open(path)?;
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed)?;
    Ok(())
}

fn mib_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / seconds
}

/// Write and restore bandwidth of the store vs the raw disk.
pub fn savepoint_bandwidth(scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let blobs = sizes.savepoint_bytes.div_ceil(BLOB_BYTES);
    let blob: Vec<u8> = (0..BLOB_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let total = blobs * BLOB_BYTES;

    // Raw: the same bytes, written sequentially to one file and fsynced, then read back.
    let raw_path = scratch.join("raw.bin");
    let started = Instant::now();
    let mut file = File::create(&raw_path)?;
    for _ in 0..blobs {
        file.write_all(&blob)?;
    }
    file.sync_all()?;
    let raw_write = mib_per_s(total, started.elapsed().as_secs_f64());
    evict(&raw_path)?;
    let started = Instant::now();
    let mut file = File::open(&raw_path)?;
    for _ in 0..blobs {
        // Into fresh memory, as a restore must: it keeps every state until the guests take it.
        let mut buffer = vec![0; BLOB_BYTES];
        file.read_exact(&mut buffer)?;
        black_box(&buffer);
    }
    let raw_read = mib_per_s(total, started.elapsed().as_secs_f64());
    std::fs::remove_file(&raw_path)?;

    // The store: one state file per subtask, then `_metadata` and the atomic publish.
    let store = Store::open(scratch.join("savepoint-home"))?;
    let job: JobId = "job-bench".parse().map_err(anyhow::Error::msg)?;
    let operator: OperatorId = "state".parse().map_err(anyhow::Error::msg)?;
    let checkpoint = CheckpointId(1);
    let started = Instant::now();
    let files = (0..blobs as u32)
        .map(|subtask| store.write_state(&job, checkpoint, &operator, subtask, &blob))
        .collect::<Result<Vec<_>, _>>()?;
    let metadata = Metadata {
        job: job.clone(),
        checkpoint,
        kind: BarrierKind::Savepoint,
        completed_unix_ms: 0,
        job_file: String::new(),
        operators: vec![OperatorState {
            id: operator,
            module_sha256: String::new(),
            module_name: "bench".to_owned(),
            module_version: "0".to_owned(),
            parallelism: blobs as u32,
            files,
        }],
    };
    let folder =
        store.complete_savepoint(&metadata, &"sp-bench".parse().map_err(anyhow::Error::msg)?)?;
    let write = mib_per_s(total, started.elapsed().as_secs_f64());
    for entry in std::fs::read_dir(&folder)? {
        evict(&entry?.path())?;
    }
    let started = Instant::now();
    let point = store.read_point(&folder)?;
    let states = store.read_states(&point)?;
    black_box(&states);
    let read = mib_per_s(total, started.elapsed().as_secs_f64());
    drop(states);
    std::fs::remove_dir_all(&folder)?;

    let row = |name: String, value: f64, raw: f64| Row {
        name,
        value,
        unit: "MiB/s",
        baseline: Some(raw),
        baseline_name: "raw disk",
        ratio: Some(value / raw),
        target: "≥ 0.5× raw",
        met: Some(value / raw >= 0.5),
    };
    let mib = total >> 20;
    Ok(vec![
        row(
            format!("savepoint write, {mib} MiB (fsync, checksums)"),
            write,
            raw_write,
        ),
        row(
            format!("savepoint restore, {mib} MiB (checksums verified)"),
            read,
            raw_read,
        ),
    ])
}
