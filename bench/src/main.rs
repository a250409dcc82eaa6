//! `bench`: measures the host against baselines on the same machine, in the same run, and
//! reports ratios (these machines are shared and noisy: absolute figures drift, ratios less).
//!
//! 1. pipeline throughput (WASM word count vs the same logic in native Rust): parallelism 1 with
//!    the whole process pinned to one core and unpinned, parallelism 2; the peer job;
//! 2. boundary cost per record at batch sizes 1, 64, 1 024, 16 384;
//! 3. checkpoint overhead on the peer job at 1 M keys (checkpoints every second vs none), and
//!    what a checkpoint costs (its pause and the bytes it writes) when 1 % of 1 M keys changed,
//!    against a full one;
//! 4. savepoint write and restore bandwidth vs raw sequential disk bandwidth;
//! 5. upgrade downtime as a user meets it: `host stop --save`, then `host run v2.toml --from`
//!    until the new module processed its first batch, separate processes ([`process`]);
//! 6. start-up of a 5-operator `host run` to its first record, cache cold and warm; the
//!    resident memory of that job, idle.
//! 7. savepoint write and restore on an S3-compatible server (moto) vs the local folder;
//! 8. rescaling 2 -> 3 vs resuming 2 -> 2, through `host` processes as a user runs them;
//! 9. the tokenizer and the counter in Python and JavaScript against Rust: records/s, the cost
//!    of a call, component size, cold compile, job start with the cache warm.
//! 10. `host state read` of 1 M keys into Parquet vs reading the point's files raw.
//! 11. event time ([`time`]): a tumbling-window count against a native loop doing the same
//!     windowing; a timer's cost end to end; a checkpoint of 1 M pending timers, 1 % changed.
//! 12. the peer job on 1, 2, 3 `host worker` processes vs one process; the exchange between
//!     workers vs a raw TCP copy of the same bytes ([`cluster`]); checkpoints on 3 workers
//!     vs 1, on moto ([`cluster_checkpoints`]).
//! 13. connectors, against real servers ([`servers`]): JetStream source throughput vs an
//!     ordered consumer; the PostgreSQL sink vs `COPY`; latency from publish to a visible row
//!     ([`connectors`]). Skipped, with a line saying why, when the servers cannot start.
//!
//! The rows of 5, 6 and 8 run the `host` binary built beside this one.
//!
//! Usage: `bench [--quick] [--only pipeline,boundary,…] [--guests DIR] [--json FILE]`, or
//! `bench --render docs/bench.json` ([`report`]: the page from a run's results); `just
//! bench` builds what it needs. Paths default to cargo's target directory this binary was built
//! into (`<target-dir>/<profile>/bench`), so that `CARGO_TARGET_DIR` is honoured.

// The arguments' doc comments are clap's `--help` text, where `<target-dir>` is a placeholder
// to print as it is, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

mod batches;
mod boundary;
mod checkpoints;
mod cluster;
mod cluster_checkpoints;
mod connectors;
mod disk;
mod jobs;
mod languages;
mod lifecycle;
mod metrics;
mod process;
mod report;
mod rescale;
mod runs;
mod servers;
mod shadow;
mod state_tools;
mod store;
mod time;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;

/// Benchmarks of the job host against native Rust and raw disk, in one run.
#[derive(Parser)]
struct Args {
    /// Small workloads (under a minute): a smoke test of the benchmarks, not a measurement.
    #[arg(long)]
    quick: bool,
    /// Folder of the compiled example components [default: <target-dir>/wasm32-wasip2/guest,
    /// <target-dir> being the one this binary is in].
    #[arg(long)]
    guests: Option<PathBuf>,
    /// Where to write the results as JSON [default: <target-dir>/bench.json].
    #[arg(long)]
    json: Option<PathBuf>,
    /// Render `benchmarks.md` beside this `bench.json` of a full run (`docs/bench.json`),
    /// keeping the page's hand-written notes, and run nothing.
    #[arg(long, value_name = "JSON")]
    render: Option<PathBuf>,
    /// Name the guests' compiled functions for `perf` (`/tmp/perf-<pid>.map`), as `host
    /// --profile perfmap` does: for profiling one benchmark with `perf record`.
    #[arg(long)]
    perf_map: bool,
    /// Run only these benchmarks (for profiling one of them).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Bench>,
    /// Runs of each pipeline configuration, instead of 5 (1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    repetitions: Option<u16>,
    /// Words in the pipeline's input, instead of 3 000 000 (300 000 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    words: Option<u32>,
    /// Also put the modules the language benchmark compiled into this compiled-module cache
    /// (the end-to-end tests' `<target-dir>/e2e-module-cache`, which CI fills next).
    #[arg(long, value_name = "DIR")]
    share_cache: Option<PathBuf>,
    /// How long the job to upgrade runs before `host stop --save`, instead of 8 000 ms (1 000
    /// with --quick): long enough for its generator to have covered its keys (a slow build
    /// needs longer; the row's label says how many keys the counter held).
    #[arg(long, value_name = "MS")]
    upgrade_warm_ms: Option<u64>,
}

/// The benchmarks, by name (in `--help`'s order; they run in [`Bench::IN_ORDER`]).
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Bench {
    Pipeline,
    Peer,
    Boundary,
    Checkpoints,
    Overhead,
    Savepoint,
    Upgrade,
    Startup,
    ObjectStore,
    Rescale,
    Languages,
    Metrics,
    StateRead,
    Shadow,
    Time,
    Workers,
    Exchange,
    WorkerCheckpoints,
    Connectors,
}

impl Bench {
    /// Every benchmark, in the order they run (the report's order).
    const IN_ORDER: [Bench; 19] = [
        Bench::Pipeline,
        Bench::Peer,
        Bench::Boundary,
        Bench::Checkpoints,
        Bench::Overhead,
        Bench::Savepoint,
        Bench::Upgrade,
        Bench::Metrics,
        Bench::Startup,
        Bench::ObjectStore,
        Bench::Rescale,
        Bench::Languages,
        Bench::StateRead,
        Bench::Shadow,
        Bench::Time,
        Bench::Workers,
        Bench::Exchange,
        Bench::WorkerCheckpoints,
        Bench::Connectors,
    ];
}

/// One line of the report.
#[derive(Serialize)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// The host's figure.
    pub value: f64,
    /// Its unit.
    pub unit: &'static str,
    /// The baseline's figure, in the same unit, if there is one.
    pub baseline: Option<f64>,
    /// What the baseline is.
    pub baseline_name: &'static str,
    /// `value / baseline` (or the inverse for times, so that higher is always better), if any.
    pub ratio: Option<f64>,
    /// The target, in words.
    pub target: &'static str,
    /// Whether the target is met, if it can be judged from this row.
    pub met: Option<bool>,
}

/// Sizes of the workloads.
#[derive(Clone, Copy, Serialize)]
pub struct Sizes {
    /// Words in the pipeline's input.
    pub pipeline_words: usize,
    /// Records of the peer job (at least twice its distinct keys).
    pub peer_records: usize,
    /// Distinct keys among them.
    pub distinct_keys: usize,
    /// Records pushed through the boundary per batch size.
    pub boundary_records: usize,
    /// Bytes of state written and restored.
    pub savepoint_bytes: usize,
    /// Bytes of keyed state carried across an upgrade.
    pub upgrade_state_bytes: usize,
    /// Keys of state whose checkpoints are measured.
    pub checkpoint_keys: usize,
    /// Checkpoints measured after 1 % of those keys changed.
    pub checkpoint_rounds: usize,
    /// Bytes of state written and restored on the object store (and locally, beside it).
    pub object_store_bytes: usize,
    /// Distinct keys of the keyed state rescaled.
    pub rescale_keys: usize,
    /// Keys of the savepoint `host state read` reads.
    pub state_keys: usize,
    /// Records of the peer job a shadow run reads.
    pub shadow_records: usize,
    /// Words through each language's tokenizer and counter.
    pub language_words: usize,
    /// Runs of each pipeline configuration (the fastest counts).
    pub repetitions: usize,
    /// Whether the language benchmark measures the tokenizer only, compiling the languages'
    /// components at once (a quick run: a cold Python or JavaScript compile takes tens of
    /// seconds), rather than the tokenizer and the counter, one language after another.
    pub languages_quick: bool,
    /// Records of the windowed count.
    pub window_records: usize,
    /// Event-time timers registered and fired (one a record).
    pub timers: usize,
    /// Pending timers whose checkpoints are measured.
    pub checkpoint_timers: usize,
    /// Records of the peer job on worker processes.
    pub worker_records: usize,
    /// Checkpoints timed on 1 and on 3 worker processes (on moto).
    pub cluster_checkpoints: usize,
    /// Records through the exchange (a sixteenth of them with 1 KiB values).
    pub exchange_records: usize,
    /// Messages of the JetStream stream read to its end.
    pub stream_messages: usize,
    /// Rows through the PostgreSQL sink (and `COPY`).
    pub sink_rows: usize,
    /// Messages whose latency to a visible row is measured.
    pub latency_messages: usize,
    /// Messages a second they are published at.
    pub latency_rate: u64,
    /// Keys of the peer job whose checkpoint overhead is measured.
    pub overhead_keys: usize,
    /// Its checkpoint interval.
    pub overhead_interval_ms: u64,
    /// About how long each of its runs lasts.
    pub overhead_seconds: f64,
    /// Pairs of runs, one with checkpoints and one without, adjacent, in alternating order.
    pub overhead_runs: usize,
    /// Keys of the counter carried across the upgrade from v1 to v2.
    pub upgrade_keys: usize,
    /// How long the job runs before the upgrade (so that it holds those keys).
    pub upgrade_warm_ms: u64,
    /// How many times each `run --from` and each live upgrade is timed (the median counts).
    pub upgrade_runs: usize,
    /// How long the idle job runs after its first record before its memory is read.
    pub idle_settle_ms: u64,
}

impl Sizes {
    /// Small workloads: a smoke test of the benchmarks.
    fn quick() -> Sizes {
        Sizes {
            pipeline_words: 300_000,
            peer_records: 200_000,
            distinct_keys: 100_000,
            boundary_records: 200_000,
            savepoint_bytes: 64 << 20,
            upgrade_state_bytes: 10 << 20,
            checkpoint_keys: 100_000,
            checkpoint_rounds: 30,
            object_store_bytes: 16 << 20,
            rescale_keys: 100_000,
            state_keys: 100_000,
            shadow_records: 50_000,
            language_words: 20_000,
            repetitions: 1,
            languages_quick: true,
            window_records: 100_000,
            stream_messages: 20_000,
            sink_rows: 20_000,
            latency_messages: 500,
            latency_rate: 500,
            exchange_records: 200_000,
            cluster_checkpoints: 1,
            worker_records: 50_000,
            timers: 50_000,
            checkpoint_timers: 50_000,
            overhead_keys: 100_000,
            overhead_interval_ms: 100,
            overhead_seconds: 4.0,
            overhead_runs: 1,
            upgrade_keys: 100_000,
            upgrade_warm_ms: 1_000,
            upgrade_runs: 1,
            idle_settle_ms: 1_000,
        }
    }

    /// The workloads the flags ask for: quick or full, then `--repetitions`, `--words` and
    /// `--upgrade-warm-ms` over them.
    fn asked(args: &Args) -> Sizes {
        let sizes = if args.quick {
            Sizes::quick()
        } else {
            Sizes::full()
        };
        Sizes {
            repetitions: args.repetitions.map_or(sizes.repetitions, usize::from),
            pipeline_words: args.words.map_or(sizes.pipeline_words, |w| w as usize),
            upgrade_warm_ms: args.upgrade_warm_ms.unwrap_or(sizes.upgrade_warm_ms),
            ..sizes
        }
    }

    /// The workloads of a measurement.
    fn full() -> Sizes {
        Sizes {
            pipeline_words: 3_000_000,
            peer_records: 10_000_000,
            distinct_keys: 100_000,
            boundary_records: 4_000_000,
            savepoint_bytes: 1 << 30,
            upgrade_state_bytes: 100 << 20,
            checkpoint_keys: 1_000_000,
            checkpoint_rounds: 250,
            object_store_bytes: 256 << 20,
            rescale_keys: 1_000_000,
            state_keys: 1_000_000,
            shadow_records: 1_000_000,
            language_words: 1_000_000,
            repetitions: 5,
            languages_quick: false,
            window_records: 10_000_000,
            stream_messages: 1_000_000,
            sink_rows: 1_000_000,
            latency_messages: 20_000,
            latency_rate: 1_000,
            exchange_records: 4_000_000,
            cluster_checkpoints: 10,
            worker_records: 10_000_000,
            timers: 1_000_000,
            checkpoint_timers: 1_000_000,
            overhead_keys: 1_000_000,
            overhead_interval_ms: 1_000,
            overhead_seconds: 25.0,
            overhead_runs: 3,
            upgrade_keys: 1_000_000,
            upgrade_warm_ms: 8_000,
            upgrade_runs: 3,
            idle_settle_ms: 5_000,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(json) = &args.render {
        let page = json.with_file_name("benchmarks.md");
        report::render(json, &page)?;
        eprintln!("bench: wrote {}", page.display());
        return Ok(());
    }
    if args.perf_map {
        host::engine::name_functions_for_perf();
    }
    let sizes = Sizes::asked(&args);
    let started = Instant::now();
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let target_dir = target_dir()?;
    let guests = guests_dir(&args, &target_dir)?;
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| target_dir.join("bench.json"));
    let scratch = tempfile::Builder::new()
        .prefix("bench")
        .tempdir_in(&target_dir)?;
    let workplace = Workplace {
        guests: &guests,
        scratch: scratch.path(),
        target_dir: &target_dir,
        share_cache: args.share_cache.as_deref(),
        sizes,
    };
    let mut rows = Vec::new();
    for chosen in Bench::IN_ORDER {
        if args.only.is_empty() || args.only.contains(&chosen) {
            rows.extend(workplace.run(chosen).await?);
        }
    }
    if args.quick {
        println!("_Quick run: workloads too small to measure; a smoke test of the benchmarks._\n");
    }
    let lines: Vec<report::Line> = rows.iter().map(report::Line::from).collect();
    print!("{}", report::table(&lines));
    let seconds = started.elapsed().as_secs_f64();
    let json = serde_json::json!({
        "run": report::Run::this(started_unix_s, seconds, args.quick),
        "quick": args.quick,
        "sizes": sizes,
        "seconds": seconds,
        "rows": rows,
    });
    std::fs::write(&json_path, serde_json::to_vec_pretty(&json)?)
        .with_context(|| format!("writing {}", json_path.display()))?;
    eprintln!(
        "bench: done in {:.1} s; results in {}",
        started.elapsed().as_secs_f64(),
        json_path.display()
    );
    Ok(())
}

/// The folder of the compiled components: `--guests`, or `<target-dir>/wasm32-wasip2/guest`.
fn guests_dir(args: &Args, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let guests_dir = args
        .guests
        .clone()
        .unwrap_or_else(|| target_dir.join("wasm32-wasip2/guest"));
    std::fs::canonicalize(&guests_dir).with_context(|| {
        format!(
            "no compiled components in {}: run `just guests` (or pass --guests)",
            guests_dir.display()
        )
    })
}

/// What every benchmark is given: its folders and the sizes of its workloads.
struct Workplace<'a> {
    guests: &'a Path,
    scratch: &'a Path,
    target_dir: &'a Path,
    share_cache: Option<&'a Path>,
    sizes: Sizes,
}

impl Workplace<'_> {
    /// Runs one benchmark; returns its rows.
    async fn run(&self, bench: Bench) -> anyhow::Result<Vec<Row>> {
        let (guests, scratch, sizes) = (self.guests, self.scratch, self.sizes);
        match bench {
            Bench::Pipeline => jobs::pipeline(guests, scratch, sizes).await,
            Bench::Peer => on_own_thread(jobs::peer_job, guests, scratch, sizes),
            Bench::Boundary => boundary::boundary(guests, scratch, sizes).await,
            Bench::Checkpoints => checkpoints::checkpoint_cost(guests, scratch, sizes).await,
            Bench::Overhead => on_own_thread(jobs::checkpoint_overhead, guests, scratch, sizes),
            Bench::Savepoint => disk::savepoint_bandwidth(scratch, sizes),
            Bench::Upgrade => lifecycle::upgrade_downtime(guests, scratch, sizes),
            Bench::Metrics => metrics::overhead(guests, scratch, sizes).await,
            Bench::Startup => lifecycle::startup_and_idle(guests, scratch, sizes),
            Bench::ObjectStore => self.object_store(),
            Bench::Rescale => rescale::rescale(guests, scratch, sizes),
            Bench::Languages => {
                languages::languages(guests, scratch, sizes, self.share_cache).await
            }
            Bench::StateRead => state_tools::state_read(guests, scratch, sizes),
            Bench::Shadow => shadow::shadow_run(guests, scratch, sizes),
            Bench::Time => on_own_thread(time::time, guests, scratch, sizes),
            Bench::Workers => cluster::workers(guests, scratch, sizes),
            Bench::Exchange => cluster::exchange(sizes).await,
            Bench::WorkerCheckpoints => {
                on_own_thread(cluster_checkpoints::on_s3, guests, scratch, sizes)
            }
            Bench::Connectors => on_own_thread(connectors::connectors, guests, scratch, sizes),
        }
    }

    /// The object-store benchmark, on a thread of its own: the object store's calls wait for a
    /// runtime of their own.
    fn object_store(&self) -> anyhow::Result<Vec<Row>> {
        let (target_dir, scratch) = (self.target_dir.to_owned(), self.scratch.to_owned());
        let sizes = self.sizes;
        let object =
            std::thread::spawn(move || store::object_store_bandwidth(&target_dir, &scratch, sizes));
        object
            .join()
            .map_err(|_| anyhow::anyhow!("the object-store benchmark panicked"))?
    }
}

/// Runs a benchmark whose jobs run on a one-thread runtime of their own, on a thread of its
/// own (a runtime cannot start inside this one).
fn on_own_thread(
    bench: fn(&Path, &Path, Sizes) -> anyhow::Result<Vec<Row>>,
    guests: &Path,
    scratch: &Path,
    sizes: Sizes,
) -> anyhow::Result<Vec<Row>> {
    let (guests, scratch) = (guests.to_owned(), scratch.to_owned());
    std::thread::spawn(move || bench(&guests, &scratch, sizes))
        .join()
        .map_err(|_| anyhow::anyhow!("a benchmark panicked"))?
}

/// Cargo's target directory this binary was built into: it runs as
/// `<target-dir>/<profile>/bench` (from `cargo run` and `just bench` alike), wherever
/// `CARGO_TARGET_DIR` or cargo's configuration put that.
fn target_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the bench executable")?;
    exe.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .with_context(|| format!("{} is not <target-dir>/<profile>/bench", exe.display()))
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::Bench;

    #[test]
    fn every_benchmark_has_its_place_in_the_running_order() {
        for bench in Bench::value_variants() {
            let places = Bench::IN_ORDER.iter().filter(|b| *b == bench).count();
            assert_eq!(places, 1, "{:?}", bench.to_possible_value());
        }
    }
}
