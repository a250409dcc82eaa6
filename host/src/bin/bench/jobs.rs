//! Benchmarks that run whole jobs in this process: pipeline throughput against native Rust,
//! checkpoint overhead, upgrade downtime, start-up.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};
use host::engine::{CacheMode, Engine, Limits};
use host::ids::JobId;
use host::runtime::{self, Job, JobSpec, Outcome, Request, RestoreFrom};
use host::store::Store;
use host::topology::Plan;

use crate::{Row, Sizes};

/// Writes `words` words drawn from `distinct` keys, ten to a line; returns the text.
pub(crate) fn write_input(dir: &Path, words: usize, distinct: usize) -> anyhow::Result<String> {
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
    value.clear();
    value.extend_from_slice(key);
    value.push(b' ');
    value.extend_from_slice(itoa::Buffer::new().format(*count).as_bytes());
    black_box(&value).len()
}

/// The peer job's work natively: generate `records` keys over `keys` (the generator's
/// sequence), count each, write its value; the null sink's discarding is nothing.
fn native_peer(records: u64, keys: u64) -> usize {
    let mut counts: hashbrown::HashMap<Vec<u8>, u64> = hashbrown::HashMap::default();
    let (mut state, mut key, mut value, mut out) =
        (0x2545_f491_4f6c_dd1d_u64, Vec::new(), Vec::new(), 0);
    for _ in 0..records {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        key.clear();
        key.push(b'k');
        key.extend_from_slice(itoa::Buffer::new().format(state % keys).as_bytes());
        out += count(&mut counts, &key, &mut value);
    }
    out
}

/// The peer job of Apache Flink's benchmarks, on one thread for the host as for the native
/// loop: generator -> key-by -> counter (SDK keyed state) -> null sink, parallelism 1, run to
/// its end; against the same work natively. Rows at each number of distinct keys.
pub fn peer_job(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for keys in [100_000, 1_000_000] {
        let records = sizes.peer_records.max(keys * 2);
        let dir = scratch.join(format!("peer-{keys}"));
        std::fs::create_dir_all(&dir)?;
        let text = "checkpoint_interval_ms = 0\n".to_owned()
            + &operator(
                "generator",
                "source",
                &guests.join("generator.wasm"),
                1,
                &format!("config = {{ records = \"{records}\", keys = \"{keys}\" }}"),
            )
            + &operator(
                "counter",
                "operator",
                &guests.join("counter_v1.wasm"),
                1,
                "",
            )
            + &operator("sink", "sink", &guests.join("null_sink.wasm"), 1, "")
            + &edge("generator", "counter", "key-by")
            + &edge("counter", "sink", "forward");
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
            let built = one_thread.block_on(build(&engine, &store, &dir, &text, None))?;
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
            baseline_name: "native Rust, 1 thread, same work",
            ratio: Some(host / native),
            target: "≥ 0.8× native",
            met: Some(host / native >= 0.8),
        });
    }
    Ok(rows)
}

fn operator(id: &str, role: &str, module: &Path, parallelism: u32, extra: &str) -> String {
    format!(
        "[[operators]]\nid = \"{id}\"\nrole = \"{role}\"\nmodule = \"{}\"\nparallelism = {parallelism}\n{extra}\n",
        module.display()
    )
}

fn edge(from: &str, to: &str, partition: &str) -> String {
    format!("[[edges]]\nfrom = \"{from}\"\nto = \"{to}\"\npartition = \"{partition}\"\n")
}

const SOURCE_MOUNT: &str =
    "config = { path = \"/input/words.txt\" }\nmounts = [{ host = \"input\", guest = \"/input\" }]";

/// A state folder under `dir` and an engine caching compiled modules in it.
pub(crate) fn open(dir: &Path) -> anyhow::Result<(Store, Arc<Engine>)> {
    let store = Store::open(dir.join("home"))?;
    let engine = Engine::new(&store.layout().cache(), CacheMode::ReadWrite);
    Ok((store, Arc::new(engine.map_err(|e| anyhow!("{e:#}"))?)))
}

/// Builds a job from `text` (whose relative paths are under `dir`).
pub(crate) async fn build(
    engine: &Arc<Engine>,
    store: &Store,
    dir: &Path,
    text: &str,
    restore: Option<RestoreFrom>,
) -> anyhow::Result<Job> {
    let plan = Plan::from_toml(text, dir)?;
    let spec = JobSpec {
        job: JobId::generate(),
        plan,
        job_file: text.to_owned(),
        restore,
        limits: Limits::default(),
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
async fn run_to_end(job: Job) -> anyhow::Result<Duration> {
    let started = Instant::now();
    match job.spawn().wait().await {
        Outcome::Finished => Ok(started.elapsed()),
        other => Err(anyhow!("benchmark job ended with {other:?}")),
    }
}

/// The fastest of some runs of the same work: on a shared machine noise only ever adds time,
/// so the fastest run is the one least disturbed.
pub(crate) fn fastest(times: &[Duration]) -> Duration {
    *times.iter().min().expect("at least one run")
}

/// The benchmark pipeline's job file: `lines -> tokenize -> counter (key-by) -> null sink`.
pub(crate) fn pipeline_job(guests: &Path, parallelism: u32, interval_ms: u64) -> String {
    format!("checkpoint_interval_ms = {interval_ms}\n")
        + &operator(
            "lines",
            "source",
            &guests.join("line_source.wasm"),
            1,
            SOURCE_MOUNT,
        )
        + &operator(
            "tokenize",
            "operator",
            &guests.join("tokenizer.wasm"),
            parallelism,
            "",
        )
        + &operator(
            "counter",
            "operator",
            &guests.join("counter_v1.wasm"),
            parallelism,
            "",
        )
        + &operator(
            "sink",
            "sink",
            &guests.join("null_sink.wasm"),
            parallelism,
            "",
        )
        + &edge("lines", "tokenize", "rebalance")
        + &edge("tokenize", "counter", "key-by")
        + &edge("counter", "sink", "forward")
}

/// Pipeline throughput at parallelism 1 and 2, and checkpoint overhead. Each configuration runs
/// `sizes.repetitions` times, interleaved with the others so that drift of a shared machine
/// falls on all alike, and the fastest run of each counts.
pub async fn pipeline(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("pipeline");
    let text = write_input(&dir, sizes.pipeline_words, sizes.distinct_keys)?;
    let (store, engine) = open(&dir)?;
    let job = |parallelism, interval_ms| pipeline_job(guests, parallelism, interval_ms);
    let configurations = [(1, 0), (2, 0), (2, 1_000)];
    let mut native = Vec::new();
    let mut hosted: Vec<Vec<Duration>> = vec![Vec::new(); configurations.len()];
    for _ in 0..sizes.repetitions {
        let started = Instant::now();
        black_box(native_wordcount(&text));
        native.push(started.elapsed());
        for (times, (parallelism, interval_ms)) in hosted.iter_mut().zip(configurations) {
            let built = build(&engine, &store, &dir, &job(parallelism, interval_ms), None).await?;
            times.push(run_to_end(built).await?);
        }
    }
    let rate = |elapsed: Duration| sizes.pipeline_words as f64 / elapsed.as_secs_f64();
    let native = rate(fastest(&native));
    let [p1, p2, p2_checkpointed] = [0, 1, 2].map(|i| fastest(&hosted[i]));
    let mut rows = Vec::new();
    for (parallelism, elapsed) in [(1, p1), (2, p2)] {
        rows.push(Row {
            name: format!("pipeline throughput, parallelism {parallelism}"),
            value: rate(elapsed),
            unit: "records/s",
            baseline: Some(native),
            baseline_name: "native Rust, 1 thread",
            ratio: Some(rate(elapsed) / native),
            target: "≥ 0.5× native",
            met: Some(rate(elapsed) / native >= 0.5),
        });
    }
    let overhead = (p2_checkpointed.as_secs_f64() / p2.as_secs_f64() - 1.0) * 100.0;
    rows.push(Row {
        name: "checkpoint overhead, every 1 s (parallelism 2)".to_owned(),
        value: overhead,
        unit: "%",
        baseline: None,
        baseline_name: "",
        ratio: Some(p2.as_secs_f64() / p2_checkpointed.as_secs_f64()),
        target: "≤ 5 %",
        met: Some(overhead <= 5.0),
    });
    Ok(rows)
}

/// The time from `stop --save` to the upgraded job running again, with keyed state.
pub async fn upgrade_downtime(
    guests: &Path,
    scratch: &Path,
    sizes: Sizes,
) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("upgrade");
    write_input(&dir, 200_000, 1_000)?;
    let (store, engine) = open(&dir)?;
    let text = "checkpoint_interval_ms = 0\n".to_owned()
        + &operator(
            "lines",
            "source",
            &guests.join("line_source.wasm"),
            1,
            &format!("records_per_second_max = 20000\n{SOURCE_MOUNT}"),
        )
        + &operator(
            "state",
            "operator",
            &guests.join("ballast.wasm"),
            1,
            &format!(
                "memory_bytes_max = 1073741824\nconfig = {{ state_bytes = {} }}",
                sizes.upgrade_state_bytes
            ),
        )
        + &operator("sink", "sink", &guests.join("null_sink.wasm"), 1, "")
        + &edge("lines", "state", "forward")
        + &edge("state", "sink", "forward");
    let handle = build(&engine, &store, &dir, &text, None).await?.spawn();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let stopping = Instant::now();
    let (reply, answer) = tokio::sync::oneshot::channel();
    let requests = handle.requests();
    requests
        .send(Request::Save { stop: true, reply })
        .await
        .map_err(|_| anyhow!("job gone"))?;
    let saved = answer.await?.map_err(|e| anyhow!(e))?;
    handle.wait().await;
    let savepoint_ms = stopping.elapsed().as_secs_f64() * 1e3;
    let loading = Instant::now();
    let point = store.read_point(&saved.path)?;
    let states = store.read_states(&point)?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let restoring = Instant::now();
    let upgraded = build(
        &engine,
        &store,
        &dir,
        &text,
        Some(RestoreFrom {
            metadata: point.metadata,
            states,
        }),
    )
    .await?;
    let running = upgraded.spawn();
    let restore_ms = restoring.elapsed().as_secs_f64() * 1e3;
    let downtime_ms = stopping.elapsed().as_secs_f64() * 1e3;
    let (reply, _) = tokio::sync::oneshot::channel();
    running
        .requests()
        .send(Request::Cancel { reply })
        .await
        .context("cancelling")?;
    running.wait().await;
    eprintln!(
        "bench: upgrade: savepoint-and-stop {savepoint_ms:.0} ms, verify {load_ms:.0} ms, build-and-restore {restore_ms:.0} ms"
    );
    Ok(vec![Row {
        name: format!(
            "upgrade downtime, {} MiB of state",
            sizes.upgrade_state_bytes >> 20
        ),
        value: downtime_ms,
        unit: "ms",
        baseline: None,
        baseline_name: "",
        ratio: None,
        target: "≤ 1 000 ms",
        met: Some(downtime_ms <= 1_000.0),
    }])
}

/// Building a 5-operator job from a cold compiled-module cache, then from a warm one.
pub async fn startup(guests: &Path, scratch: &Path) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("startup");
    write_input(&dir, 1_000, 100)?;
    let store = Store::open(dir.join("home"))?;
    let text = operator(
        "lines",
        "source",
        &guests.join("line_source.wasm"),
        1,
        SOURCE_MOUNT,
    ) + &operator(
        "tokenize",
        "operator",
        &guests.join("tokenizer.wasm"),
        1,
        "",
    ) + &operator("pass", "operator", &guests.join("ballast.wasm"), 1, "")
        + &operator(
            "counter",
            "operator",
            &guests.join("counter_v1.wasm"),
            1,
            "",
        )
        + &operator("sink", "sink", &guests.join("null_sink.wasm"), 1, "")
        + &edge("lines", "tokenize", "forward")
        + &edge("tokenize", "pass", "forward")
        + &edge("pass", "counter", "key-by")
        + &edge("counter", "sink", "forward");
    let mut times = Vec::new();
    for _ in 0..2 {
        let started = Instant::now();
        let engine = Arc::new(
            Engine::new(&store.layout().cache(), CacheMode::ReadWrite)
                .map_err(|e| anyhow!("{e:#}"))?,
        );
        let job = build(&engine, &store, &dir, &text, None).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        drop(job);
    }
    let (cold, cached) = (times[0], times[1]);
    Ok(vec![Row {
        name: "start-up, 5 operators, compiled-module cache warm".to_owned(),
        value: cached,
        unit: "ms",
        baseline: Some(cold),
        baseline_name: "cold: compiling every component",
        ratio: Some(cold / cached),
        target: "≤ 100 ms",
        met: Some(cached <= 100.0),
    }])
}
