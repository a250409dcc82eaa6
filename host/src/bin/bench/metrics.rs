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
    let scraper = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(SCRAPE_EVERY);
        for scrapes in 0.. {
            if !scraped {
                return scrapes;
            }
            ticker.tick().await;
            std::hint::black_box(prometheus::encode(&[metrics.sample()]));
        }
        unreachable!("the job ends first")
    });
    let outcome = handle.wait().await;
    let elapsed = started.elapsed();
    scraper.abort();
    let scrapes = scraper.await.unwrap_or_default();
    match outcome {
        Outcome::Finished => Ok((elapsed, scrapes)),
        other => Err(anyhow::anyhow!("benchmark job ended with {other:?}")),
    }
}

/// Throughput with metrics scraped every second against none.
pub async fn overhead(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("metrics");
    write_input(&dir, sizes.pipeline_words, sizes.distinct_keys)?;
    let (store, engine) = open(&dir)?;
    let text = pipeline_job(guests, 2, 0);
    let mut times = [Vec::new(), Vec::new()];
    for _ in 0..sizes.repetitions {
        for (scraped, runs) in [false, true].into_iter().zip(&mut times) {
            let job = build(&engine, &store, &dir, &text, JobId::generate()).await?;
            runs.push(run_once(job, scraped).await?.0);
        }
    }
    let [quiet, scraped] = times.map(|t| fastest(&t));
    let overhead = (scraped.as_secs_f64() / quiet.as_secs_f64() - 1.0) * 100.0;
    Ok(vec![Row {
        name: "metrics overhead, scraped every 1 s (parallelism 2)".to_owned(),
        value: overhead,
        unit: "%",
        baseline: None,
        baseline_name: "",
        ratio: Some(quiet.as_secs_f64() / scraped.as_secs_f64()),
        target: "≤ 2 %",
        met: Some(overhead <= 2.0),
    }])
}
