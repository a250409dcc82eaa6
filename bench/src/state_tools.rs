//! `host state read` of a savepoint's keyed state into Parquet, in process, against reading
//! the same point's files raw (every byte of its state files and segments, warm in the page
//! cache, as the read finds them): what decoding the envelope, resolving each key group and
//! writing typed, compressed columns costs over the I/O they cannot avoid.
//!
//! The savepoint is made by `host state bootstrap` from JSON lines (`key-<n>` -> n, a
//! word-count v1 state) for a counter at parallelism 2: the same pieces a counter writes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use host::points::state::{self, Bootstrap, Format, ReadRequest};
use host::store::Store;

use crate::jobs::{edge, operator};
use crate::runs::Runs;
use crate::{Row, Sizes};

/// Times each measurement is taken (the median counts).
const RUNS: usize = 3;

/// The row: `state read` of `sizes.state_keys` keys into Parquet.
pub fn state_read(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("state-read");
    std::fs::create_dir_all(&dir)?;
    let store = Store::open(dir.join("home"))?;
    let job_file = dir.join("job.toml");
    let job = [
        operator("numbers", "source", &guests.join("generator.wasm"), 1, ""),
        operator(
            "counter",
            "operator",
            &guests.join("counter_v1.wasm"),
            2,
            "",
        ),
        operator("sink", "sink", &guests.join("null_sink.wasm"), 1, ""),
        edge("numbers", "counter", "key-by"),
        edge("counter", "sink", "rebalance"),
    ];
    std::fs::write(
        &job_file,
        format!("name = \"state-read\"\n{}", job.concat()),
    )?;
    let rows: String = (0..sizes.state_keys)
        .map(|n| format!("{{\"key\":\"key-{n}\",\"value\":{n}}}\n"))
        .collect();
    let point = bootstrap_counter(&store, &job_file, &rows, "keys")?;
    let out = dir.join("keys.parquet");
    let timed = time_reads(&store, &point, &out, sizes.state_keys)?;
    let (ms, raw_ms) = (timed.read.median(), timed.raw.median());
    let keys = sizes.state_keys;
    let parquet_bytes = std::fs::metadata(&out)?.len();
    Ok(vec![Row {
        name: format!(
            "`host state read` of {} k keys ({:.1} MiB of state files and segments) into Parquet \
             ({:.1} MiB){}",
            keys / 1_000,
            timed.state_bytes as f64 / (1 << 20) as f64,
            parquet_bytes as f64 / (1 << 20) as f64,
            timed.read.spread("ms"),
        ),
        value: ms,
        unit: "ms",
        baseline: Some(raw_ms),
        baseline_name: "reading the same files raw, warm",
        ratio: Some(raw_ms / ms),
        target: "≤ 1 s for 1 M keys",
        met: (keys >= 1_000_000).then_some(ms <= 1_000.0 * keys as f64 / 1e6),
    }])
}

/// A savepoint `to` of `job_file`'s job with its counter's (`counter`, a word count v1)
/// keyed state loaded from the JSON lines `rows`, as `host state bootstrap` writes it; returns
/// its folder.
pub fn bootstrap_counter(
    store: &Store,
    job_file: &Path,
    rows: &str,
    to: &str,
) -> anyhow::Result<PathBuf> {
    let file = job_file.with_file_name(format!("{to}.jsonl"));
    std::fs::write(&file, rows)?;
    let bootstrapped = state::bootstrap(
        store,
        &Bootstrap {
            job_file: job_file.to_owned(),
            operator: "counter".parse().map_err(anyhow::Error::msg)?,
            rows: file,
            format: "word-count".to_owned(),
            version: 1,
            to: to.parse().map_err(anyhow::Error::msg)?,
        },
    )?;
    Ok(bootstrapped.dir)
}

/// The timings of [`state_read`]: the reads into Parquet and the raw reads, each in ms.
struct Timed {
    read: Runs,
    raw: Runs,
    state_bytes: u64,
}

/// Times `RUNS` reads of the counter's state of the point in `dir` into Parquet at `out`
/// (every one of `keys` keys), each followed by a raw read of the point's files.
fn time_reads(store: &Store, dir: &Path, out: &Path, keys: usize) -> anyhow::Result<Timed> {
    let point = store.read_point(dir)?;
    let request = ReadRequest {
        operator: "counter".parse().map_err(anyhow::Error::msg)?,
        key: None,
        key_group: None,
        format: Format::Parquet,
    };
    let (mut read, mut raw, mut state_bytes) = (Vec::new(), Vec::new(), 0);
    for _ in 0..RUNS {
        let started = Instant::now();
        let file = std::fs::File::create(out)?;
        let summary = state::read(store, &point, "keys", &request, file)?;
        read.push(started.elapsed().as_secs_f64() * 1e3);
        anyhow::ensure!(summary.keys as usize == keys, "{summary:?}");
        let started = Instant::now();
        state_bytes = read_raw(dir)?;
        raw.push(started.elapsed().as_secs_f64() * 1e3);
    }
    Ok(Timed {
        read: Runs(read),
        raw: Runs(raw),
        state_bytes,
    })
}

/// Reads every file of the point folder `dir` whole; returns the bytes read.
fn read_raw(dir: &Path) -> anyhow::Result<u64> {
    let mut bytes = 0;
    for entry in std::fs::read_dir(dir)? {
        bytes += std::hint::black_box(std::fs::read(entry?.path())?).len() as u64;
    }
    Ok(bytes)
}
