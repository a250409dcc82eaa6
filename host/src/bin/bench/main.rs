//! `bench`: measures the host against baselines on the same machine, in the same run, and
//! reports ratios (these machines are shared and noisy: absolute figures drift, ratios less).
//!
//! 1. pipeline throughput (WASM word count vs the same logic in native Rust), parallelism 1, 2;
//! 2. boundary cost per record at batch sizes 1, 64, 1 024, 16 384;
//! 3. checkpoint overhead (checkpoints every second vs none), and what a checkpoint costs (its
//!    pause and the bytes it writes) when 1 % of 1 M keys changed, against a full one;
//! 4. savepoint write and restore bandwidth vs raw sequential disk bandwidth;
//! 5. upgrade downtime with keyed state;
//! 6. start-up of a 5-operator job, cold and with the compiled-module cache.
//!
//! Usage: `bench [--quick] [--only pipeline,boundary,…] [--guests DIR] [--json FILE]`; `just
//! bench` builds what it needs. Paths default to cargo's target directory this binary was built
//! into (`<target-dir>/<profile>/bench`), so that `CARGO_TARGET_DIR` is honoured.

mod boundary;
mod checkpoints;
mod disk;
mod jobs;
mod metrics;

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
    /// Run only these benchmarks (for profiling one of them).
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Bench>,
    /// Runs of each pipeline configuration, instead of 5 (1 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    repetitions: Option<u16>,
    /// Words in the pipeline's input, instead of 3 000 000 (300 000 with --quick).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    words: Option<u32>,
}

/// The benchmarks, by name.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Bench {
    Pipeline,
    Peer,
    Boundary,
    Checkpoints,
    Savepoint,
    Upgrade,
    Startup,
    Metrics,
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
    /// Runs of each pipeline configuration (the fastest counts).
    pub repetitions: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sizes = if args.quick {
        Sizes {
            pipeline_words: 300_000,
            peer_records: 200_000,
            distinct_keys: 100_000,
            boundary_records: 200_000,
            savepoint_bytes: 64 << 20,
            upgrade_state_bytes: 10 << 20,
            checkpoint_keys: 100_000,
            checkpoint_rounds: 30,
            repetitions: 1,
        }
    } else {
        Sizes {
            pipeline_words: 3_000_000,
            peer_records: 10_000_000,
            distinct_keys: 100_000,
            boundary_records: 4_000_000,
            savepoint_bytes: 1 << 30,
            upgrade_state_bytes: 100 << 20,
            checkpoint_keys: 1_000_000,
            checkpoint_rounds: 250,
            repetitions: 5,
        }
    };
    let sizes = Sizes {
        repetitions: args.repetitions.map_or(sizes.repetitions, usize::from),
        pipeline_words: args.words.map_or(sizes.pipeline_words, |w| w as usize),
        ..sizes
    };
    let started = Instant::now();
    let target_dir = target_dir()?;
    let guests_dir = args
        .guests
        .clone()
        .unwrap_or_else(|| target_dir.join("wasm32-wasip2/guest"));
    let guests = std::fs::canonicalize(&guests_dir).with_context(|| {
        format!(
            "no compiled components in {}: run `just guests` (or pass --guests)",
            guests_dir.display()
        )
    })?;
    let json_path = args
        .json
        .clone()
        .unwrap_or_else(|| target_dir.join("bench.json"));
    let scratch = tempfile::Builder::new()
        .prefix("bench")
        .tempdir_in(&target_dir)?;
    let runs = |bench: Bench| args.only.is_empty() || args.only.contains(&bench);
    let mut rows = Vec::new();
    if runs(Bench::Pipeline) {
        rows.extend(jobs::pipeline(&guests, scratch.path(), sizes).await?);
    }
    if runs(Bench::Peer) {
        let (guests, scratch) = (guests.clone(), scratch.path().to_owned());
        // Its own thread: the job runs on a one-thread runtime of its own.
        let peer = std::thread::spawn(move || jobs::peer_job(&guests, &scratch, sizes));
        rows.extend(
            peer.join()
                .map_err(|_| anyhow::anyhow!("the peer job panicked"))??,
        );
    }
    if runs(Bench::Boundary) {
        rows.extend(boundary::boundary(&guests, scratch.path(), sizes).await?);
    }
    if runs(Bench::Checkpoints) {
        rows.extend(checkpoints::checkpoint_cost(&guests, scratch.path(), sizes).await?);
    }
    if runs(Bench::Savepoint) {
        rows.extend(disk::savepoint_bandwidth(scratch.path(), sizes)?);
    }
    if runs(Bench::Upgrade) {
        rows.extend(jobs::upgrade_downtime(&guests, scratch.path(), sizes).await?);
    }
    if runs(Bench::Metrics) {
        rows.extend(metrics::overhead(&guests, scratch.path(), sizes).await?);
    }
    if runs(Bench::Startup) {
        rows.extend(jobs::startup(&guests, scratch.path()).await?);
    }
    print_table(&rows, args.quick);
    let json = serde_json::json!({
        "quick": args.quick,
        "sizes": sizes,
        "seconds": started.elapsed().as_secs_f64(),
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

fn print_table(rows: &[Row], quick: bool) {
    if quick {
        println!("_Quick run: workloads too small to measure; a smoke test of the benchmarks._\n");
    }
    println!("| measurement | host | baseline | ratio | target | met |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let baseline = row.baseline.map_or("".to_owned(), |b| {
            format!("{} {} ({})", figure(b), row.unit, row.baseline_name)
        });
        let ratio = row.ratio.map_or("".to_owned(), |r| format!("{r:.2}×"));
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        println!(
            "| {} | {} {} | {baseline} | {ratio} | {} | {met} |",
            row.name,
            figure(row.value),
            row.unit,
            row.target
        );
    }
}

fn figure(x: f64) -> String {
    if x >= 100.0 {
        format!("{x:.0}")
    } else if x >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}
