//! Benchmarks that run whole jobs in this process: pipeline throughput against native Rust,
//! checkpoint overhead, upgrade downtime, start-up.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use host::engine::{CacheMode, Engine, Grants, Instance, Limits, Module};
use host::ids::{JobId, SubtaskId};
use host::protected::Protected;
use host::runtime::{self, Job, JobRecord, JobSpec, Outcome};
use host::store::Store;
use host::topology::Plan;

use crate::process::OneCore;
use crate::runs::Runs;
use crate::{Row, Sizes};

/// Writes `words` words drawn from `distinct` keys, ten to a line; returns the text.
pub fn write_input(dir: &Path, words: usize, distinct: usize) -> anyhow::Result<String> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut text = String::with_capacity(words * 8);
    for i in 0..words {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push_str(&format!("k{}", state % distinct as u64));
        text.push(if i % 10 == 9 { '\n' } else { ' ' });
    }
    std::fs::create_dir_all(dir.join("input"))?;
    std::fs::write(dir.join("input/words.txt"), &text)?;
    Ok(text)
}

/// The same work as tokenizer + counter-v1, natively and as those guests do it: split,
/// lower-case into a reused buffer, count in a hash map with a fast hasher, write the value
/// with `itoa` into a reused buffer.
fn native_wordcount(text: &str) -> usize {
    let mut counts: hashbrown::HashMap<Vec<u8>, u64> = hashbrown::HashMap::default();
    let (mut word, mut value, mut out) = (String::new(), Vec::new(), 0);
    for line in text.lines() {
        for token in line.split(|c: char| !c.is_alphanumeric()) {
            if token.is_empty() {
                continue;
            }
            word.clear();
            word.extend(token.chars().flat_map(char::to_lowercase));
            out += count(&mut counts, word.as_bytes(), &mut value);
        }
    }
    out
}

/// Counts `key` and writes `key count` into `value`, as counter-v1 does; returns its length.
fn count(counts: &mut hashbrown::HashMap<Vec<u8>, u64>, key: &[u8], value: &mut Vec<u8>) -> usize {
    let count = counts.entry_ref(key).or_insert(0);
    *count += 1;
    write_count(key, *count, value)
}

/// Writes `key count` into `value`, as counter-v1 does; returns its length.
fn write_count(key: &[u8], count: u64, value: &mut Vec<u8>) -> usize {
    value.clear();
    value.extend_from_slice(key);
    value.push(b' ');
    value.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
    black_box(&value).len()
}

/// The generator's next key (`k<n>`, `n` the next number of its xorshift sequence modulo
/// `keys`, the sequence's state in `state`), into `key`.
pub(crate) fn generator_key(state: &mut u64, keys: u64, key: &mut Vec<u8>) {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    key.clear();
    key.push(b'k');
    key.extend_from_slice(itoa::Buffer::new().format(*state % keys).as_bytes());
}

/// The peer job's work natively, with the data structure its guests use: generate `records`
/// keys over `keys` (the generator's sequence), each key's group as the host's key-by gives
/// it, count each in the SDK's own keyed state ([`jobhost_guest::Keyed`], one table per key
/// group, keys inline, compiled natively), write its value as counter-v1 does; the null
/// sink's discarding is nothing.
fn native_peer(records: u64, keys: u64) -> usize {
    let mut keyed = jobhost_guest::Keyed::<u64>::new(0..MAX_PARALLELISM);
    let (mut state, mut key, mut value, mut out) =
        (0x2545_f491_4f6c_dd1d_u64, Vec::new(), Vec::new(), 0);
    for i in 0..records {
        generator_key(&mut state, keys, &mut key);
        let record = jobhost_batch::Record {
            key: &key,
            value: b"",
            timestamp: i as i64,
            key_group: Some(host::key_group::key_group(&key, MAX_PARALLELISM)),
        };
        let count = keyed.or_default(&record);
        *count += 1;
        out += write_count(&key, *count, &mut value);
    }
    out
}

/// The peer job of Apache Flink's benchmarks, on one thread for the host as for the native
/// loop: generator -> key-by -> counter (SDK keyed state) -> null sink, parallelism 1, run to
/// its end; against the same work natively, in the same keyed state (so that the ratio is the
/// host's overhead, not another data structure's). Rows at each number of distinct keys.
pub fn peer_job(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for keys in [100_000, 1_000_000] {
        let records = sizes.peer_records.max(keys * 2);
        let dir = scratch.join(format!("peer-{keys}"));
        std::fs::create_dir_all(&dir)?;
        let text = peer_text(guests, records, keys, 0);
        // One thread for the whole job: the host's pipeline against one native thread.
        let one_thread = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (store, engine) = open(&dir)?;
        let (mut hosted, mut native) = (Vec::new(), Vec::new());
        for _ in 0..sizes.repetitions {
            let started = Instant::now();
            black_box(native_peer(records as u64, keys as u64));
            native.push(started.elapsed());
            let built =
                one_thread.block_on(build(&engine, &store, &dir, &text, JobId::generate()))?;
            hosted.push(one_thread.block_on(run_to_end(built))?);
        }
        let rate = |elapsed: Duration| records as f64 / elapsed.as_secs_f64();
        let (host, native) = (rate(fastest(&hosted)), rate(fastest(&native)));
        rows.push(Row {
            name: format!(
                "peer job (generator, keyed count, null sink), {} k keys, 1 thread",
                keys / 1_000
            ),
            value: host,
            unit: "records/s",
            baseline: Some(native),
            baseline_name: "native Rust, 1 thread, same work: keys hashed to 128 key groups \
                            as key-by does, counted in the SDK's keyed state compiled natively",
            ratio: Some(host / native),
            target: "≥ 0.8× native",
            met: Some(host / native >= 0.8),
        });
    }
    Ok(rows)
}

/// The peer job's file: `records` records over `keys` keys, checkpoints every `interval_ms`.
pub fn peer_text(guests: &Path, records: usize, keys: usize, interval_ms: u64) -> String {
    peer_text_at(guests, records, keys, interval_ms, 1)
}

/// The peer job's file with every operator at `parallelism`.
pub fn peer_text_at(
    guests: &Path,
    records: usize,
    keys: usize,
    interval_ms: u64,
    parallelism: u32,
) -> String {
    let config = format!("config = {{ records = \"{records}\", keys = \"{keys}\" }}");
    let module = |name: &str| guests.join(format!("{name}.wasm"));
    format!("checkpoint_interval_ms = {interval_ms}\n")
        + &operator(
            "generator",
            "source",
            &module("generator"),
            parallelism,
            &config,
        )
        + &operator(
            "counter",
            "operator",
            &module("counter_v1"),
            parallelism,
            "",
        )
        + &operator("sink", "sink", &module("null_sink"), parallelism, "")
        + &edge("generator", "counter", "key-by")
        + &edge("counter", "sink", "forward")
}

/// An operator of a job file.
pub fn operator(id: &str, role: &str, module: &Path, parallelism: u32, extra: &str) -> String {
    format!(
        "[[operators]]\nid = \"{id}\"\nrole = \"{role}\"\nmodule = \"{}\"\nparallelism = {parallelism}\n{extra}\n",
        module.display()
    )
}

/// An edge of a job file.
pub fn edge(from: &str, to: &str, partition: &str) -> String {
    format!("[[edges]]\nfrom = \"{from}\"\nto = \"{to}\"\npartition = \"{partition}\"\n")
}

pub const SOURCE_MOUNT: &str =
    "config = { path = \"/input/words.txt\" }\nmounts = [{ host = \"input\", guest = \"/input\" }]";

/// A state folder under `dir` and an engine caching compiled modules in it.
pub(crate) fn open(dir: &Path) -> anyhow::Result<(Store, Arc<Engine>)> {
    let store = Store::open(dir.join("home"))?;
    let engine = Engine::new(
        &store.layout().cache(),
        &store.layout().cache_key(),
        CacheMode::ReadWrite,
    );
    Ok((store, Arc::new(engine.map_err(|e| anyhow!("{e:#}"))?)))
}

/// Builds a job from `text` (whose relative paths are under `dir`).
pub(crate) async fn build(
    engine: &Arc<Engine>,
    store: &Store,
    dir: &Path,
    text: &str,
    job: JobId,
) -> anyhow::Result<Job> {
    let plan = Plan::from_toml(text, dir)?;
    let spec = JobSpec {
        job,
        plan,
        record: JobRecord::new(text.to_owned(), dir, None),
        restore: None,
        taking_over: false,
        limits: Limits::default(),
        protected: Protected::new(store.layout().root(), &store.layout().cache(), Some(dir)),
        // The benchmarks' jobs have no connectors, so no secrets; every subtask runs here.
        secrets: Default::default(),
        remote: None,
        bound: None,
    };
    runtime::build(engine.clone(), store.clone(), spec)
        .await
        .map_err(|errors| {
            anyhow!(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })
}

/// Runs a job to its end; returns how long it ran.
pub(crate) async fn run_to_end(job: Job) -> anyhow::Result<Duration> {
    Ok(run_counted(job).await?.0)
}

/// Runs a job to its end; returns how long it ran, and how long its subtasks spent on
/// checkpoints on their own paths, all together (the metric `checkpoint_sync_seconds`).
async fn run_counted(job: Job) -> anyhow::Result<(Duration, Duration)> {
    let started = Instant::now();
    let handle = job.spawn();
    let metrics = handle.metrics();
    match handle.wait().await {
        Outcome::Finished => {}
        other => return Err(anyhow!("benchmark job ended with {other:?}")),
    }
    let took = started.elapsed();
    let subtasks = metrics.sample().subtasks;
    let synced = subtasks.iter().map(|s| s.checkpoint_sync_ns).sum();
    Ok((took, Duration::from_nanos(synced)))
}

/// The max parallelism (key groups) of the jobs the benchmarks build by hand.
pub(crate) const MAX_PARALLELISM: u32 = 128;

/// The context of the only subtask of operator `id`: every key group, no config.
pub(crate) fn lone_subtask(id: &str) -> host::engine::bindings::Context {
    host::engine::bindings::Context {
        operator_id: id.to_owned(),
        subtask: 0,
        parallelism: 1,
        max_parallelism: MAX_PARALLELISM,
        key_group_start: 0,
        key_group_end: MAX_PARALLELISM,
        config: vec![],
    }
}

/// An instance of `module` with no grants, initialised as the only subtask of operator `id`.
pub(crate) async fn lone_instance(
    engine: &Engine,
    module: &Module,
    id: &str,
    limits: Limits,
) -> anyhow::Result<Instance> {
    let subtask = SubtaskId {
        operator: id.parse().map_err(|e: String| anyhow!(e))?,
        index: 0,
    };
    let grants = Grants {
        mounts: &[],
        clock: false,
        protected: &Protected::default(),
    };
    let mut instance = engine.instantiate(module, subtask, limits, grants).await?;
    instance.init(&lone_subtask(id)).await?;
    Ok(instance)
}

/// The fastest of some runs of the same work: on a shared machine noise only ever adds time,
/// so the fastest run is the one least disturbed.
pub(crate) fn fastest(times: &[Duration]) -> Duration {
    *times.iter().min().expect("at least one run")
}

/// The word count's job file at `parallelism` (the source at 1).
fn wordcount_text(guests: &Path, parallelism: u32) -> String {
    let module = |name: &str| guests.join(format!("{name}.wasm"));
    operator("lines", "source", &module("line_source"), 1, SOURCE_MOUNT)
        + &operator(
            "tokenize",
            "operator",
            &module("tokenizer"),
            parallelism,
            "",
        )
        + &operator(
            "counter",
            "operator",
            &module("counter_v1"),
            parallelism,
            "",
        )
        + &operator("sink", "sink", &module("null_sink"), parallelism, "")
        + &edge("lines", "tokenize", "rebalance")
        + &edge("tokenize", "counter", "key-by")
        + &edge("counter", "sink", "forward")
}

/// The benchmark pipeline's job file, checkpoints every `interval_ms` (0: none).
pub(crate) fn pipeline_job(guests: &Path, parallelism: u32, interval_ms: u64) -> String {
    format!("checkpoint_interval_ms = {interval_ms}\n") + &wordcount_text(guests, parallelism)
}

/// The pipeline's configurations: parallelism, and whether the whole process (every thread of
/// the host, and the native baseline) is pinned to one core while it runs.
const PIPELINES: [(u32, bool); 3] = [(1, true), (1, false), (2, false)];

fn pipeline_name(parallelism: u32, pinned: bool) -> String {
    let how = match (parallelism, pinned) {
        (_, true) => "pinned: the whole process (host and native) on one core",
        (1, false) => "unpinned: the host's threads on 2 cores, native on 1",
        _ => "unpinned (2 cores), native on 1",
    };
    format!("pipeline throughput, parallelism {parallelism}, {how}")
}

/// Pipeline throughput at parallelism 1, pinned to one core and not, and at parallelism 2.
/// Each configuration runs `sizes.repetitions` times, interleaved with the others and with the
/// native baseline (pinned when they are) so that drift of a shared machine falls on all
/// alike, and the fastest run of each counts.
pub async fn pipeline(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("pipeline");
    let text = write_input(&dir, sizes.pipeline_words, sizes.distinct_keys)?;
    let (store, engine) = open(&dir)?;
    // Native times, unpinned then pinned; the host's, by configuration.
    let mut native: [Vec<Duration>; 2] = Default::default();
    let mut hosted: Vec<Vec<Duration>> = vec![Vec::new(); PIPELINES.len()];
    for _ in 0..sizes.repetitions {
        for pinned in [true, false] {
            let _one_core = pinned.then(OneCore::pin).transpose()?;
            let started = Instant::now();
            black_box(native_wordcount(&text));
            native[usize::from(pinned)].push(started.elapsed());
            let alike = hosted
                .iter_mut()
                .zip(PIPELINES)
                .filter(|(_, c)| c.1 == pinned);
            for (times, (parallelism, _)) in alike {
                let job = wordcount_text(guests, parallelism);
                let built = build(&engine, &store, &dir, &job, JobId::generate()).await?;
                times.push(run_to_end(built).await?);
            }
        }
    }
    let rate = |elapsed: Duration| sizes.pipeline_words as f64 / elapsed.as_secs_f64();
    let rows = PIPELINES
        .iter()
        .zip(&hosted)
        .map(|(&(parallelism, pinned), times)| {
            let (host, native) = (
                rate(fastest(times)),
                rate(fastest(&native[usize::from(pinned)])),
            );
            Row {
                name: pipeline_name(parallelism, pinned),
                value: host,
                unit: "records/s",
                baseline: Some(native),
                baseline_name: if pinned {
                    "native Rust, 1 thread, pinned alike"
                } else {
                    "native Rust, 1 thread"
                },
                ratio: Some(host / native),
                target: "≥ 0.5× native",
                met: Some(host / native >= 0.5),
            }
        });
    Ok(rows.collect())
}

/// Checkpoint overhead on the peer job at `sizes.overhead_keys` keys: checkpoints every
/// `sizes.overhead_interval_ms` against none, on one thread (as the peer job row), each run
/// long enough (about `sizes.overhead_seconds`, calibrated by a first run) for at least 20
/// checkpoints, `sizes.overhead_runs` pairs of runs, one of each, in alternating order (a machine
/// that speeds up or slows down over the pairs favours neither). A pair's runs are adjacent:
/// its overhead is measured on one state of the machine, and the median pair's counts. A
/// second row gives the checkpoints' work on the job's path, which the machine's drift does
/// not move.
pub fn checkpoint_overhead(
    guests: &Path,
    scratch: &Path,
    sizes: Sizes,
) -> anyhow::Result<Vec<Row>> {
    let (keys, interval_ms) = (sizes.overhead_keys, sizes.overhead_interval_ms);
    let dir = scratch.join("overhead");
    std::fs::create_dir_all(&dir)?;
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (store, engine) = open(&dir)?;
    let run = |records: usize, interval_ms: u64| -> anyhow::Result<OverheadRun> {
        let (job, text) = (
            JobId::generate(),
            peer_text(guests, records, keys, interval_ms),
        );
        let built = one_thread.block_on(build(&engine, &store, &dir, &text, job.clone()))?;
        let (took, synced) = one_thread.block_on(run_counted(built))?;
        let last = store.checkpoints(&job)?.last().map_or(0, |c| c.0);
        Ok(OverheadRun { took, synced, last })
    };
    // Calibration (and warm-up): the records that take the job about the time wanted, grown
    // until a run without checkpoints lasts most of it (the first records, which insert keys,
    // are slower than the rest: one short probe underestimates the rate).
    let mut records = keys * 3;
    for _ in 0..4 {
        let elapsed = run(records, 0)?.took.as_secs_f64();
        if elapsed >= sizes.overhead_seconds * 0.8 {
            break;
        }
        records = (records as f64 * sizes.overhead_seconds / elapsed) as usize;
    }
    let mut pairs = Vec::new();
    for pair in 0..sizes.overhead_runs {
        pairs.push(match pair % 2 {
            0 => (run(records, 0)?, run(records, interval_ms)?),
            _ => {
                let every = run(records, interval_ms)?;
                (run(records, 0)?, every)
            }
        });
    }
    let overhead = Overhead { sizes, pairs };
    eprintln!(
        "bench: checkpoint overhead: {records} records a run, checkpoints {:?}",
        overhead
            .pairs
            .iter()
            .map(|(_, every)| every.checkpoints())
            .collect::<Vec<_>>()
    );
    Ok(vec![overhead.wall_clock_row(), overhead.work_row()])
}

/// One run of the overhead's job.
struct OverheadRun {
    took: Duration,
    /// The subtasks' time on checkpoints on their own paths (snapshot and merge), together.
    synced: Duration,
    /// Its last checkpoint's number.
    last: u64,
}

impl OverheadRun {
    /// The periodic checkpoints it took (its last is the final one, at the end of its input).
    fn checkpoints(&self) -> u64 {
        self.last.saturating_sub(1)
    }
}

/// The pairs of runs of the overhead's job: without checkpoints, then with them.
struct Overhead {
    sizes: Sizes,
    pairs: Vec<(OverheadRun, OverheadRun)>,
}

impl Overhead {
    /// What the row's label says of the runs: keys, interval, pairs, length, checkpoints.
    fn runs(&self) -> String {
        let sizes = self.sizes;
        let checkpoints = self.pairs.iter().map(|(_, every)| every.checkpoints());
        let seconds = self.pairs.iter().map(|(none, _)| none.took.as_secs_f64());
        format!(
            "peer job at {} k keys, every {} ms vs none ({} pair(s) of runs, one of each, \
             adjacent, in alternating order; {:.0} s a run, ≥ {} checkpoints a run",
            sizes.overhead_keys / 1_000,
            sizes.overhead_interval_ms,
            self.pairs.len(),
            Runs(seconds.collect()).median(),
            checkpoints.min().unwrap_or(0),
        )
    }

    /// The wall clock: each pair's run with checkpoints against its run without, the median
    /// pair's overhead (what a user meets; this machine's drift shows in the range).
    fn wall_clock_row(&self) -> Row {
        let overheads = self.pairs.iter().map(|(none, every)| {
            (every.took.as_secs_f64() / none.took.as_secs_f64() - 1.0) * 100.0
        });
        let overheads = Runs(overheads.collect());
        let (overhead, (low, high)) = (overheads.median(), overheads.range());
        let enough = self
            .pairs
            .iter()
            .all(|(_, every)| every.checkpoints() >= 20);
        Row {
            name: format!(
                "checkpoint overhead, {}; the pairs: {low:.1} % to {high:.1} %)",
                self.runs()
            ),
            value: overhead,
            unit: "%",
            baseline: None,
            baseline_name: "",
            ratio: Some(1.0 / (1.0 + overhead / 100.0)),
            target: "≤ 5 % (and ≥ 20 checkpoints a run)",
            met: Some(overhead <= 5.0 && enough),
        }
    }

    /// The work: the time the subtasks spent on the periodic checkpoints on their own paths
    /// (the runs without them take a final one too, which is subtracted), as a share of the run.
    /// A share of one run's own time, it does not drift with the machine; it is what the
    /// checkpoints cost before their effects on caches and of the writes beside the job.
    fn work_row(&self) -> Row {
        let shares = self.pairs.iter().map(|(none, every)| {
            let work = every.synced.saturating_sub(none.synced);
            work.as_secs_f64() / every.took.as_secs_f64() * 100.0
        });
        let shares = Runs(shares.collect());
        let (share, (low, high)) = (shares.median(), shares.range());
        Row {
            name: format!(
                "checkpoint work on the job's path (snapshot and merge, the metric \
                 `checkpoint_sync_seconds`) as a share of the run, {}; the pairs: \
                 {low:.1} % to {high:.1} %)",
                self.runs()
            ),
            value: share,
            unit: "%",
            baseline: None,
            baseline_name: "",
            ratio: None,
            target: "",
            met: None,
        }
    }
}
