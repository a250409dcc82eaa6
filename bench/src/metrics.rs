//! What metrics cost: the benchmark pipeline (parallelism 2, no checkpoints) with its metrics
//! sampled and encoded as `/metrics` would every second, against the same pipeline with nobody
//! asking, interleaved in one run. The per-subtask counters themselves are always on (relaxed
//! atomics, once per batch): both sides pay them; what they cost alone is not measured here.

use std::path::Path;
use std::time::{Duration, Instant};

use host::runtime::Outcome;
use host::serve::prometheus;

use crate::jobs::{build, fastest, open, pipeline_job, write_input};
use crate::{Row, Sizes};
use host::ids::JobId;

/// How often a scraper asks, as Prometheus would be configured to.
const SCRAPE_EVERY: Duration = Duration::from_secs(1);

/// One run of the pipeline: how long it ran, how many scrapes it served, and how long they
/// took (sampling and encoding, as `/metrics` does them).
struct Run {
    took: Duration,
    scrapes: usize,
    scraping: Duration,
}

/// Runs the pipeline once, scraping its metrics every [`SCRAPE_EVERY`] when `scraped`.
async fn run_once(job: host::runtime::Job, scraped: bool) -> anyhow::Result<Run> {
    let started = Instant::now();
    let handle = job.spawn();
    let metrics = handle.metrics();
    let served = std::sync::Arc::new(std::sync::Mutex::new((0, Duration::ZERO)));
    let count = served.clone();
    let scraper = tokio::spawn(async move {
        if !scraped {
            return;
        }
        let mut ticker = tokio::time::interval(SCRAPE_EVERY);
        loop {
            ticker.tick().await;
            let scraping = Instant::now();
            std::hint::black_box(prometheus::encode(&[], &[metrics.sample()]));
            let mut count = count.lock().expect("not poisoned");
            *count = (count.0 + 1, count.1 + scraping.elapsed());
        }
    });
    let outcome = handle.wait().await;
    let took = started.elapsed();
    scraper.abort();
    let (scrapes, scraping) = *served.lock().expect("not poisoned");
    match outcome {
        Outcome::Finished => Ok(Run {
            took,
            scrapes,
            scraping,
        }),
        other => Err(anyhow::anyhow!("benchmark job ended with {other:?}")),
    }
}

/// How many times the pipeline's input a run of this row reads: long enough for a dozen scrapes
/// or more a run, where a run of the pipeline row alone would see one or two.
const INPUT_TIMES: usize = 10;

/// Throughput with metrics scraped every second against none: interleaved runs, fastest of each
/// compared, the run-by-run spread in the label.
pub async fn overhead(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("metrics");
    let words = sizes.pipeline_words
        * if sizes.repetitions > 1 {
            INPUT_TIMES
        } else {
            1
        };
    write_input(&dir, words, sizes.distinct_keys)?;
    let (store, engine) = open(&dir)?;
    let text = pipeline_job(guests, 2, 0);
    let rounds = sizes.repetitions.min(3);
    let (mut times, mut scraped_runs) = ([Vec::new(), Vec::new()], Vec::new());
    for _ in 0..rounds {
        for (scraped, runs) in [false, true].into_iter().zip(&mut times) {
            let job = build(&engine, &store, &dir, &text, JobId::generate()).await?;
            let run = run_once(job, scraped).await?;
            runs.push(run.took);
            if scraped {
                scraped_runs.push(run);
            }
        }
    }
    let scrapes = scraped_runs.iter().map(|r| r.scrapes).min().unwrap_or(0);
    let percent = |scraped: Duration, quiet: Duration| {
        (scraped.as_secs_f64() / quiet.as_secs_f64() - 1.0) * 100.0
    };
    let pairs: Vec<f64> = times[0]
        .iter()
        .zip(&times[1])
        .map(|(q, s)| percent(*s, *q))
        .collect();
    let (low, high) = pairs
        .iter()
        .fold((f64::MAX, f64::MIN), |(l, h), p| (l.min(*p), h.max(*p)));
    let [quiet, scraped] = times.map(|t| fastest(&t));
    let overhead = percent(scraped, quiet);
    let throughput = Row {
        name: format!(
            "metrics overhead, scraped every 1 s vs none (pipeline at parallelism 2, {words} \
             words; {rounds} runs of each, interleaved, {:.0} s each, ≥ {scrapes} scrapes a run; \
             fastest compared; run by run {low:.1} % to {high:.1} %)",
            quiet.as_secs_f64()
        ),
        value: overhead,
        unit: "%",
        baseline: None,
        baseline_name: "",
        ratio: Some(quiet.as_secs_f64() / scraped.as_secs_f64()),
        target: "≤ 2 %",
        met: Some(overhead <= 2.0),
    };
    Ok(vec![throughput, scrape_work(&scraped_runs)])
}

/// The scrapes' own work, timed around each one, as a share of the runs it happened in: what
/// the throughput row above compares, without the run-to-run noise of the pipeline itself
/// (on two cores, a scrape's time is time a subtask does not run, at most).
fn scrape_work(runs: &[Run]) -> Row {
    let scrapes: usize = runs.iter().map(|r| r.scrapes).sum();
    let scraping: Duration = runs.iter().map(|r| r.scraping).sum();
    let took: Duration = runs.iter().map(|r| r.took).sum();
    let share = scraping.as_secs_f64() / took.as_secs_f64() * 100.0;
    let per_scrape_us = scraping.as_secs_f64() * 1e6 / scrapes.max(1) as f64;
    Row {
        name: format!(
            "metrics scrape work: sampling and encoding `/metrics` ({scrapes} scrapes over {} \
             runs, {per_scrape_us:.0} µs each), as a share of the scraped runs' time",
            runs.len()
        ),
        value: share,
        unit: "%",
        baseline: None,
        baseline_name: "",
        ratio: None,
        target: "≤ 2 %",
        met: Some(share <= 2.0),
    }
}
