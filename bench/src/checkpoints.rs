//! What a checkpoint costs with 1 M keys of keyed state of which 1 % changed since the previous
//! one: the pause it causes, and the bytes it writes, against a full checkpoint of the same
//! state, measured on the SDK's keyed counter (`counter_v1`) through the host's own steps.
//!
//! The pause is what a subtask spends on a checkpoint while it processes nothing: the guest's
//! `snapshot` and the host's merge of it into its copy of the state (the write runs off the hot
//! path, on the blocking pool). Each checkpoint is written ([`Store::write_state`]) and
//! published ([`Store::complete_checkpoint`], then retention of the default 3) as the
//! coordinator does, so that it links the segments of the previous point rather than writing
//! them again; its bytes are those of the files it added to the state folder: the files of the
//! published point whose inode the previous point does not hold (its new segment, its state
//! file, its `_metadata`, and any earlier segment it could not link). Each round changes a
//! different 1 % of the keys, for enough rounds that groups are written whole again on their
//! staggered schedule: the bytes are the mean of every round (so they include those rewrites),
//! the pause the longest of every round.
//!
//! Restoring that state then costs more than restoring it written whole (each group's deltas
//! are applied after its whole state): both are timed, as the counter's `restore` call into a
//! fresh instance (what the host hands over is in memory: reading it is the disk rows' part).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use host::barrier::{BarrierKind, retention_victims};
use host::engine::bindings::{Batch, StateOrigin};
use host::engine::borrowed::{KeyGroupStateRef, RestoredRef};
use host::engine::{CacheMode, Engine, Instance, Limits};
use host::ids::{CheckpointId, JobId, OperatorId};
use host::key_group::KEY_GROUP_FUNCTION;
use host::snapshot::Held;
use host::store::{Layout, Metadata, OperatorState, StateFile, StateLayout, Store};
use host::topology::{CHECKPOINTS_RETAINED_DEFAULT, Role};

use crate::batches::BatchOf;
use crate::jobs::{MAX_PARALLELISM, lone_instance};
use crate::{Row, Sizes};

/// A batch of the records with keys `k<n>` for `n` in `keys`, their key groups filled in.
fn batch_of(keys: impl Iterator<Item = u64>) -> Batch {
    let mut batch = BatchOf::new(true);
    for n in keys {
        batch.push(format!("k{n}").as_bytes(), b"", n as i64);
    }
    batch.finish()
}

/// The counter, one subtask owning every key group.
async fn counter(guests: &Path, scratch: &Path) -> anyhow::Result<Instance> {
    let engine = Engine::new(
        &scratch.join("checkpoints-cache"),
        &scratch.join("checkpoints-cache.key"),
        CacheMode::ReadWrite,
    )
    .map_err(|e| anyhow!("{e:#}"))?;
    let module = engine.load(&guests.join("counter_v1.wasm"), Role::Operator)?;
    let limits = Limits {
        memory_bytes_max: 1 << 30,
        call_ms_max: 60_000,
    };
    lone_instance(&engine, &module, "counter", limits).await
}

/// One checkpoint of the counter: its pause, and the bytes it added to the state folder.
struct Taken {
    pause: Duration,
    /// The sizes of the files of its point that the previous point does not hold.
    bytes: u64,
    /// Key groups the snapshot wrote whole.
    whole: usize,
}

/// The counter's state as the host keeps it, and where it writes it.
struct Checkpointing {
    instance: Instance,
    held: Held,
    publisher: Publisher,
}

/// Where a benchmark writes and publishes the checkpoints of one subtask's state, as the
/// coordinator does, and what each added to the state folder.
pub(crate) struct Publisher {
    store: Store,
    job: JobId,
    operator: OperatorId,
    next: u64,
    /// The files of the last published point: their lengths, by device and inode.
    published: Files,
}

/// A point's files: their lengths, by device and inode (a file linked from an earlier point
/// keeps its inode).
type Files = HashMap<(u64, u64), u64>;

impl Checkpointing {
    /// Counts the keys `k0` to `k<keys - 1>` once, in batches of 16 384.
    async fn fill(&mut self, keys: u64) -> anyhow::Result<()> {
        for chunk in (0..keys).collect::<Vec<_>>().chunks(16_384) {
            self.instance
                .process(&batch_of(chunk.iter().copied()))
                .await?;
        }
        Ok(())
    }

    /// Takes `rounds` checkpoints, each after a different 1 % of the `keys` changed; returns
    /// what each cost.
    async fn change_one_percent(&mut self, keys: u64, rounds: usize) -> anyhow::Result<Vec<Taken>> {
        let changed = keys / 100;
        let mut taken = Vec::with_capacity(rounds);
        for round in 0..rounds as u64 {
            let first = round * changed % keys;
            let window = (first..first + changed).map(|n| n % keys);
            self.instance.process(&batch_of(window)).await?;
            taken.push(self.take(false).await?);
        }
        Ok(taken)
    }

    /// Takes checkpoint `next`: snapshot, merge and homing timed, then written and published.
    async fn take(&mut self, full: bool) -> anyhow::Result<Taken> {
        let checkpoint = self.publisher.next_checkpoint();
        let started = Instant::now();
        let snapshot = self.instance.snapshot(checkpoint.0, full).await?;
        let whole = snapshot.key_groups.iter().filter(|g| !g.delta).count();
        let (operator_state, changed) = snapshot.into_changes();
        let held = &mut self.held;
        held.merge(self.instance.key_groups(), operator_state, changed, full)
            .map_err(|e| anyhow!(e))?;
        self.publisher.home(held, checkpoint);
        let pause = started.elapsed();
        let bytes = self.publisher.write_and_publish(checkpoint, held)?;
        Ok(Taken {
            pause,
            bytes,
            whole,
        })
    }
}

impl Publisher {
    /// Checkpoints of `operator` (its one subtask) of job `job` in the state folder `home`.
    pub(crate) fn open(home: &Path, job: &str, operator: &str) -> anyhow::Result<Publisher> {
        Ok(Publisher {
            store: Store::open(home)?,
            job: job.parse().map_err(anyhow::Error::msg)?,
            operator: operator.parse().map_err(anyhow::Error::msg)?,
            next: 1,
            published: Files::new(),
        })
    }

    /// The next checkpoint's number.
    pub(crate) fn next_checkpoint(&mut self) -> CheckpointId {
        self.next += 1;
        CheckpointId(self.next - 1)
    }

    /// Gives `held`'s new pieces their home in the segment of `checkpoint`, as a subtask does
    /// before it hands its state to the write.
    pub(crate) fn home(&self, held: &mut Held, checkpoint: CheckpointId) {
        let segment = Layout::segment_file_name(&self.job, checkpoint, self.operator.as_str(), 0);
        held.home_new_pieces(&segment, checkpoint.0);
    }

    /// Writes `held` as `checkpoint`'s state and publishes it; returns the bytes it added.
    pub(crate) fn write_and_publish(
        &mut self,
        checkpoint: CheckpointId,
        held: &Held,
    ) -> anyhow::Result<u64> {
        let file = self
            .store
            .write_state(&self.job, checkpoint, &self.operator, 0, held)?;
        self.publish(checkpoint, file)
    }

    /// Publishes `checkpoint`, whose one state file is `file`, as the coordinator does (its
    /// `_metadata`, then retention); returns the bytes of the files it added to the state
    /// folder: those of its point whose inode the previous point does not hold.
    fn publish(&mut self, checkpoint: CheckpointId, file: StateFile) -> anyhow::Result<u64> {
        let dir = self
            .store
            .complete_checkpoint(&self.metadata(checkpoint, file))?;
        let retained = self.store.checkpoints(&self.job)?;
        let victims = retention_victims(&retained, CHECKPOINTS_RETAINED_DEFAULT);
        self.store.remove_checkpoints(&self.job, &victims)?;
        let files = files_of(&dir)?;
        let added = files
            .iter()
            .filter(|(inode, _)| !self.published.contains_key(inode))
            .map(|(_, len)| len)
            .sum();
        self.published = files;
        Ok(added)
    }

    /// The `_metadata` of `checkpoint`: the counter's one state file, `file`.
    fn metadata(&self, checkpoint: CheckpointId, file: StateFile) -> Metadata {
        Metadata {
            job: self.job.clone(),
            checkpoint,
            kind: BarrierKind::Checkpoint,
            completed_unix_ms: 0,
            job_file: String::new(),
            max_parallelism: MAX_PARALLELISM,
            key_group_function: KEY_GROUP_FUNCTION.to_owned(),
            state_layout: StateLayout::Timed,
            operators: vec![OperatorState {
                id: self.operator.clone(),
                role: Role::Operator,
                module_sha256: String::new(),
                module_name: "word-counter".to_owned(),
                module_version: "1.0.0".to_owned(),
                parallelism: 1,
                files: vec![file],
            }],
            definition: None,
            resumed_from: None,
            generation: None,
        }
    }
}

/// The files under `dir`, by device and inode.
fn files_of(dir: &Path) -> std::io::Result<Files> {
    let mut files = Files::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_dir() {
            files.extend(files_of(&entry.path())?);
        } else {
            files.insert((metadata.dev(), metadata.ino()), metadata.len());
        }
    }
    Ok(files)
}

/// The pause and the bytes of checkpoints that follow 1 % of the keys changing, against a full
/// checkpoint of the same state.
pub async fn checkpoint_cost(
    guests: &Path,
    scratch: &Path,
    sizes: Sizes,
) -> anyhow::Result<Vec<Row>> {
    let keys = sizes.checkpoint_keys as u64;
    let mut at = Checkpointing {
        instance: counter(guests, scratch).await?,
        held: Held::default(),
        publisher: Publisher::open(
            &scratch.join("checkpoints-home"),
            "job-checkpoints",
            "counter",
        )?,
    };
    at.fill(keys).await?;
    let full = at.take(true).await?;
    let written_whole = at.held.clone();
    let rounds = at.change_one_percent(keys, sizes.checkpoint_rounds).await?;
    let costs = Costs {
        k: keys / 1_000,
        chained: restore_time(guests, scratch, &at.held).await?,
        whole: restore_time(guests, scratch, &written_whole).await?,
        full,
        rounds,
    };
    Ok(vec![
        costs.restore_row(),
        costs.pause_row(),
        costs.bytes_row(),
    ])
}

/// Milliseconds, as the rows give them.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// What the checkpoints of one run cost, and what restoring their state costs.
struct Costs {
    /// Thousands of keys in the state.
    k: u64,
    /// The full checkpoint of the state.
    full: Taken,
    /// The checkpoints after 1 % of the keys changed, one a round.
    rounds: Vec<Taken>,
    /// Restoring the state as those rounds left it (whole, then deltas).
    chained: Duration,
    /// Restoring the same keys as the full checkpoint wrote them.
    whole: Duration,
}

impl Costs {
    /// The restore after the rounds' deltas, against the same keys written whole.
    fn restore_row(&self) -> Row {
        let (k, chained, whole) = (self.k, self.chained, self.whole);
        Row {
            name: format!(
                "restore of {k} k keys after {} checkpoints of deltas (the counter's `restore` call)",
                self.rounds.len()
            ),
            value: ms(chained),
            unit: "ms",
            baseline: Some(ms(whole)),
            baseline_name: "the same keys written whole",
            ratio: Some(ms(whole) / ms(chained)),
            target: "",
            met: None,
        }
    }

    /// The longest pause of the rounds (median and p99 in the label), against the full one's.
    fn pause_row(&self) -> Row {
        let (k, full, rounds) = (self.k, &self.full, &self.rounds);
        let mut pauses: Vec<Duration> = rounds.iter().map(|t| t.pause).collect();
        pauses.sort_unstable();
        let longest = pauses.last().copied().unwrap_or_default();
        let at_rank = |q: f64| pauses[((pauses.len() - 1) as f64 * q) as usize];
        let (median, p99) = (at_rank(0.5), at_rank(0.99));
        let slowest = rounds.iter().max_by_key(|t| t.pause).map_or(0, |t| t.whole);
        Row {
            name: format!(
                "checkpoint pause, {k} k keys, 1 % changed (snapshot + merge, longest of {} \
                 checkpoints, {slowest} of 128 groups written whole in it; median {:.2} ms, \
                 p99 {:.2} ms)",
                rounds.len(),
                ms(median),
                ms(p99)
            ),
            value: ms(longest),
            unit: "ms",
            baseline: Some(ms(full.pause)),
            baseline_name: "a full checkpoint of the same state",
            ratio: Some(ms(full.pause) / ms(longest)),
            target: "≤ 10 ms at 1 M keys",
            met: Some(ms(longest) <= 10.0),
        }
    }

    /// The mean bytes a round added to the state folder (rewrites of whole groups included),
    /// against the full one's.
    fn bytes_row(&self) -> Row {
        let (k, full, rounds) = (self.k, &self.full, &self.rounds);
        let mean_bytes = rounds.iter().map(|t| t.bytes).sum::<u64>() as f64 / rounds.len() as f64;
        Row {
            name: format!(
                "checkpoint bytes written, {k} k keys, 1 % changed (mean of {} published \
                 checkpoints, rewrites included: the files each adds to the state folder, new \
                 inodes: segment, state file, `_metadata`)",
                rounds.len()
            ),
            value: mean_bytes,
            unit: "bytes",
            baseline: Some(full.bytes as f64),
            baseline_name: "a full checkpoint of the same state, published alike",
            ratio: Some(full.bytes as f64 / mean_bytes),
            target: "≈ 1 % of a full one (≤ 3 %)",
            met: Some(mean_bytes / full.bytes as f64 <= 0.03),
        }
    }
}

/// How long a fresh counter's `restore` takes to load `held`.
async fn restore_time(guests: &Path, scratch: &Path, held: &Held) -> anyhow::Result<Duration> {
    let mut fresh = counter(guests, scratch).await?;
    let key_groups = held.key_groups.iter().flat_map(|(&key_group, chain)| {
        KeyGroupStateRef::chain(key_group, chain.iter().map(|piece| &piece.bytes[..]))
    });
    let restored = RestoredRef {
        parallelism: 1,
        operator_states: vec![&held.operator_state[..]],
        key_groups: key_groups.collect(),
    };
    let origin = StateOrigin {
        module_name: "word-counter".to_owned(),
        module_version: "1.0.0".to_owned(),
        module_sha256: String::new(),
    };
    let started = Instant::now();
    fresh.restore(&restored, &origin).await?;
    Ok(started.elapsed())
}
