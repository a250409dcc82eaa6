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

/// Runs the pipeline once, scraping its metrics every [`SCRAPE_EVERY`] when `scraped`; returns
/// how long it ran and how many scrapes it served.
async fn run_once(job: host::runtime::Job, scraped: bool) -> anyhow::Result<(Duration, usize)> {
    let started = Instant::now();
    let handle = job.spawn();
    let metrics = handle.metrics();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    let scraper = tokio::spawn(async move {
        if !scraped {
            return;
        }
        let mut ticker = tokio::time::interval(SCRAPE_EVERY);
        loop {
            ticker.tick().await;
            std::hint::black_box(prometheus::encode(&[metrics.sample()]));
            count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let outcome = handle.wait().await;
    let elapsed = started.elapsed();
    scraper.abort();
    let scrapes = served.load(std::sync::atomic::Ordering::Relaxed);
    match outcome {
        Outcome::Finished => Ok((elapsed, scrapes)),
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
    let (mut times, mut scrapes) = ([Vec::new(), Vec::new()], usize::MAX);
    for _ in 0..rounds {
        for (scraped, runs) in [false, true].into_iter().zip(&mut times) {
            let job = build(&engine, &store, &dir, &text, JobId::generate()).await?;
            let (took, served) = run_once(job, scraped).await?;
            runs.push(took);
            if scraped {
                scrapes = scrapes.min(served);
            }
        }
    }
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
    Ok(vec![Row {
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
    }])
}
