//! A shadow run's throughput as a user meets it: `host shadow --from POINT v1.toml v2.toml`
//! (the old and the new peer job, one after the other, each sink captured in memory, then the
//! comparison) against `host run v2.toml --from POINT` alone over the same records, each a
//! separate process timed from its start to its exit.
//!
//! The point is made by `host state bootstrap` (one counted key): both commands start their
//! generator at its first record and read all of them, so both process the same input. Both
//! jobs' modules are in the compiled-module cache before either is timed.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use anyhow::Context as _;
use host::store::Store;

use crate::jobs::peer_text;
use crate::process::{host_binary, host_run};
use crate::runs::Runs;
use crate::state_tools::bootstrap_counter;
use crate::{Row, Sizes};

/// Times each command runs (the median counts).
const RUNS: usize = 3;

/// Distinct keys of the peer job shadowed.
const KEYS: usize = 10_000;

/// The row: a shadow run of counter v1 against v2 over `sizes.shadow_records` records.
pub fn shadow_run(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("shadow");
    std::fs::create_dir_all(&dir)?;
    let home = dir.join("home");
    let records = sizes.shadow_records;
    let v1 = peer_text(guests, records, KEYS, 1_000);
    let v2 = v1.replace("counter_v1.wasm", "counter_v2.wasm");
    let (old, new) = (dir.join("v1.toml"), dir.join("v2.toml"));
    std::fs::write(&old, format!("name = \"peer\"\n{v1}"))?;
    std::fs::write(&new, format!("name = \"peer\"\n{v2}"))?;
    // A savepoint of the old job with one counted key: its generator starts at its first
    // record.
    let row = "{\"key\":\"k0\",\"value\":0}\n";
    let point = bootstrap_counter(&Store::open(&home)?, &old, row, "shadowed")?;
    let point = point.display().to_string();
    let args = ["--from".to_owned(), point.clone()];
    // Both jobs' modules compiled into the cache first, as the old job running and a trial
    // of the new one leave them (a shadow run reads the cache, never writes it).
    host_run(&home, &old, &args)?;
    host_run(&home, &new, &args)?;
    let (mut shadowed, mut alone) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        shadowed.push(shadow(&home, &point, &old, &new)?);
        alone.push(host_run(&home, &new, &args)?.as_secs_f64() * 1e3);
    }
    let (shadowed, alone) = (Runs(shadowed), Runs(alone));
    let (ms, alone_ms) = (shadowed.median(), alone.median());
    Ok(vec![Row {
        name: format!(
            "`host shadow` of the peer job, counter v1 against v2, {} k records over {} k keys \
             (both runs and the comparison), process start to exit{}",
            records / 1_000,
            KEYS / 1_000,
            shadowed.spread("ms"),
        ),
        value: records as f64 / (ms / 1e3),
        unit: "records/s",
        baseline: Some(records as f64 / (alone_ms / 1e3)),
        baseline_name: "`host run v2.toml --from` over the same records alone, start to exit",
        ratio: Some(alone_ms / ms),
        target: "reported (it runs both jobs: ≈ 0.5×)",
        met: None,
    }])
}

/// Runs `host shadow --from POINT OLD NEW` to its end (exit status 0 or 1: they agree or
/// differ); returns how long it took, in ms.
fn shadow(home: &Path, point: &str, old: &Path, new: &Path) -> anyhow::Result<f64> {
    let mut command = Command::new(host_binary()?);
    command
        .args(["shadow", "--from", point])
        .args([old, new])
        .env("HOST_HOME", home)
        .env("HOST_LOG", "host=warn");
    let started = Instant::now();
    let output = command.output().context("starting `host shadow`")?;
    let took = started.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(
        matches!(output.status.code(), Some(0 | 1)),
        "`host shadow` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(took)
}
