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
use host::ids::{CheckpointId, JobId, OperatorId, SavepointId};
use host::key_group::KEY_GROUP_FUNCTION;
use host::snapshot::{Held, Piece};
use host::store::{Layout, Metadata, OperatorState, StateFile, Store};

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

pub fn mib_per_s(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / seconds
}

/// Bandwidths of one round, in MiB/s.
#[derive(Clone, Copy)]
struct Round {
    raw_write: f64,
    raw_read: f64,
    write: f64,
    read: f64,
}

/// Write and restore bandwidth of the store vs the raw disk. The rounds alternate raw and store
/// so that drift of a shared disk falls on both alike, and the fastest of each counts (noise
/// only ever slows a disk down).
pub fn savepoint_bandwidth(scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let blobs = sizes.savepoint_bytes.div_ceil(BLOB_BYTES);
    let blob: Vec<u8> = (0..BLOB_BYTES).map(|i| (i * 31 % 251) as u8).collect();
    let total = blobs * BLOB_BYTES;
    let mut best: Option<Round> = None;
    for _ in 0..sizes.repetitions.min(3) {
        let round = measure_round(scratch, &blob, blobs)?;
        best = Some(match best {
            None => round,
            Some(b) => Round {
                raw_write: b.raw_write.max(round.raw_write),
                raw_read: b.raw_read.max(round.raw_read),
                write: b.write.max(round.write),
                read: b.read.max(round.read),
            },
        });
    }
    let Round {
        raw_write,
        raw_read,
        write,
        read,
    } = best.expect("at least one round");

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

/// Writes `blobs` copies of `blob` raw and through the store, and reads both back from the
/// disk.
fn measure_round(scratch: &Path, blob: &[u8], blobs: usize) -> anyhow::Result<Round> {
    let total = blobs * blob.len();

    // Raw: the same bytes, written sequentially to one file and fsynced, then read back.
    let raw_path = scratch.join("raw.bin");
    let started = Instant::now();
    let mut file = File::create(&raw_path)?;
    for _ in 0..blobs {
        file.write_all(blob)?;
    }
    file.sync_all()?;
    let raw_write = mib_per_s(total, started.elapsed().as_secs_f64());
    evict(&raw_path)?;
    let started = Instant::now();
    let mut file = File::open(&raw_path)?;
    for _ in 0..blobs {
        // Into fresh memory, as a restore must: it keeps every state until the guests take it.
        let mut buffer = vec![0; blob.len()];
        file.read_exact(&mut buffer)?;
        black_box(&buffer);
    }
    let raw_read = mib_per_s(total, started.elapsed().as_secs_f64());
    std::fs::remove_file(&raw_path)?;

    let store = Store::open(scratch.join("savepoint-home"))?;
    let job: JobId = "job-bench".parse().map_err(anyhow::Error::msg)?;
    let (write, read) = store_round(&store, &job, blob, blobs)?;
    Ok(Round {
        raw_write,
        raw_read,
        write,
        read,
    })
}

/// Writes `blobs` copies of `blob` as one savepoint of `job` through `store` and restores it;
/// returns both bandwidths in MiB/s, and removes the savepoint. One subtask's state per blob,
/// as one key group of keyed state: each subtask's segment and state file written on its own
/// thread as the runtime's subtasks write theirs (on tokio's blocking
/// pool), then `_metadata` and the atomic publish; the restore verifies every checksum. In a
/// local folder, the files are evicted from the page cache before they are read.
pub fn store_round(
    store: &Store,
    job: &JobId,
    blob: &[u8],
    blobs: usize,
) -> anyhow::Result<(f64, f64)> {
    let total = blobs * blob.len();
    let savepoint = BenchSavepoint {
        job,
        operator: "state".parse().map_err(anyhow::Error::msg)?,
        checkpoint: CheckpointId(1),
    };
    let states = savepoint.states(blob, blobs);
    let started = Instant::now();
    let files = savepoint.write(store, &states)?;
    let metadata = savepoint.metadata(files);
    let id: SavepointId = "sp-bench".parse().map_err(anyhow::Error::msg)?;
    let folder = store.complete_savepoint(&metadata, &id)?;
    let write = mib_per_s(total, started.elapsed().as_secs_f64());
    // What of it lies on this machine leaves the page cache (an object store's stays remote).
    if let Some(folder) = store.local_path(&folder) {
        for entry in std::fs::read_dir(folder)? {
            evict(&entry?.path())?;
        }
    }
    let read = restore(store, &folder, total)?;
    store.remove_savepoint(&id)?;
    Ok((write, read))
}

/// Restores the savepoint in `folder`, `total` bytes of state, every checksum verified; returns
/// the bandwidth in MiB/s.
fn restore(store: &Store, folder: &Path, total: usize) -> anyhow::Result<f64> {
    let started = Instant::now();
    let point = store.read_point(folder)?;
    let states = store.read_states(&point)?;
    black_box(&states);
    Ok(mib_per_s(total, started.elapsed().as_secs_f64()))
}

/// The savepoint a store round writes: one operator's state, one subtask a blob.
struct BenchSavepoint<'a> {
    job: &'a JobId,
    operator: OperatorId,
    checkpoint: CheckpointId,
}

impl BenchSavepoint<'_> {
    /// The states of `blobs` subtasks, each `blob` as key group 0, homed in its own segment.
    fn states(&self, blob: &[u8], blobs: usize) -> Vec<Held> {
        let (job, checkpoint) = (self.job, self.checkpoint);
        (0..blobs as u32)
            .map(|subtask| {
                let mut held = Held::default();
                held.key_groups
                    .insert(0, vec![Piece::new(bytes::Bytes::copy_from_slice(blob))]);
                let operator = self.operator.as_str();
                let segment = Layout::segment_file_name(job, checkpoint, operator, subtask);
                held.home_new_pieces(&segment, checkpoint.0);
                held
            })
            .collect()
    }

    /// Writes each subtask's state on a thread of its own; returns the state files written.
    fn write(&self, store: &Store, states: &[Held]) -> anyhow::Result<Vec<StateFile>> {
        let (job, checkpoint, operator) = (self.job, self.checkpoint, &self.operator);
        let files = std::thread::scope(|scope| {
            let writers: Vec<_> = (0..states.len() as u32)
                .map(|subtask| {
                    let held = &states[subtask as usize];
                    scope.spawn(move || store.write_state(job, checkpoint, operator, subtask, held))
                })
                .collect();
            writers
                .into_iter()
                .map(|writer| writer.join().expect("a writer thread panicked"))
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(files)
    }

    /// The savepoint's `_metadata`: the operator, at one subtask per state file.
    fn metadata(self, files: Vec<StateFile>) -> Metadata {
        Metadata {
            job: self.job.clone(),
            checkpoint: self.checkpoint,
            kind: BarrierKind::Savepoint,
            completed_unix_ms: 0,
            job_file: String::new(),
            max_parallelism: 128,
            key_group_function: KEY_GROUP_FUNCTION.to_owned(),
            state_layout: host::store::StateLayout::Timed,
            operators: vec![OperatorState {
                role: host::ids::Role::Operator,
                id: self.operator,
                module_sha256: String::new(),
                module_name: "bench".to_owned(),
                module_version: "0".to_owned(),
                parallelism: files.len() as u32,
                files,
            }],
            definition: None,
            resumed_from: None,
            generation: None,
        }
    }
}
