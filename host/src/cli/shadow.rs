//! `host shadow --from POINT OLD.toml NEW.toml`: both jobs run from the point on the same
//! input, changing nothing ([`host::shadow`]); prints how their outputs and state compare.
//! Exit status 0 when they agree, 1 when they differ, 2 when a run failed or was refused.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use host::engine::CacheMode;
use host::points::savepoint::Mapping;
use host::serve::shadows::{ShadowFailed, ShadowRunner};
use host::shadow::diff::{RecordDiff, SinkDiff, StateDiff};
use host::shadow::{Limit, Report, Side};
use host::store::Store;
use serde_json::Value as Json;

use super::terminal::{escaped, said_once};

/// `host shadow`'s flags.
#[derive(Debug, clap::Args)]
pub struct ShadowArgs {
    /// The point both jobs start from: a savepoint id, a folder, a job id or JOB_ID:N.
    #[arg(long = "from", value_name = "POINT")]
    from: String,
    /// The job file of the job running now.
    old: PathBuf,
    /// The job file of the job to try.
    new: PathBuf,
    /// Read at most N records per source subtask [default: until the sources end].
    #[arg(long, value_name = "N")]
    records: Option<u64>,
    /// Read for at most this long (`500ms`, `30s`, `2m`, `1h`) [default: until the sources end].
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
}

/// Runs the shadow run and prints what it found; a failure is printed here, exit status 2.
pub fn shadow(store: &Store, args: ShadowArgs, json: bool) -> ExitCode {
    let from = args.from.clone();
    let report = match compare(store, args) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {}", escaped(&said_once(&error)));
            return ExitCode::from(2);
        }
    };
    let agrees = report.agrees();
    if json {
        let mut value = serde_json::to_value(&report).expect("a report serializes");
        value["agrees"] = Json::Bool(agrees);
        value["point"] = Json::String(from);
        let text = serde_json::to_string_pretty(&value).expect("JSON serializes");
        println!("{text}");
    } else {
        print(&report, &from);
    }
    match agrees {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(1),
    }
}

/// What `host serve` runs a shadow run with: the same as `host shadow`'s, its failure worded
/// as here.
pub fn runner() -> ShadowRunner {
    Arc::new(|store, request| {
        let args = ShadowArgs {
            from: request.from.clone().unwrap_or_default(),
            old: request.old.clone(),
            new: request.new.clone(),
            records: request.records,
            duration: request.duration(),
        };
        compare(store, args).map_err(|error| ShadowFailed(said_once(&error)))
    })
}

/// Prepares both jobs from the point (each checked against it as `run` checks it), then runs
/// them.
fn compare(store: &Store, args: ShadowArgs) -> anyhow::Result<Report> {
    let side = |job_file: &Path| -> anyhow::Result<Side> {
        let mapping = Mapping::default();
        let prepared =
            super::start::prepare(store, Some(job_file), Some(&args.from), &mapping, None)?;
        Ok(prepared.into_shadow_side(store))
    };
    let (old, new) = (side(&args.old)?, side(&args.new)?);
    let limit = Limit {
        records: args.records,
        duration: args.duration,
    };
    let engine = super::start::engine(store, CacheMode::ReadOnly)?;
    let runtime = super::tokio_runtime()?;
    Ok(runtime.block_on(host::shadow::run(engine, old, new, limit))?)
}

/// Reads `500ms`, `30s`, `2m`, `1h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("`{text}`: expected a number and a unit, e.g. `30s`"))?;
    let ms = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("`{text}`: the unit is one of ms, s, m, h")),
    };
    Ok(Duration::from_millis(number.saturating_mul(ms)))
}

/// Prints the report for people.
fn print(report: &Report, from: &str) {
    println!(
        "shadow run from {}: {} (old) against {} (new)",
        escaped(from),
        escaped(&report.old),
        escaped(&report.new)
    );
    for read in &report.input {
        match read.old == read.new {
            true => println!("  source {}: {} records read", read.subtask, read.old),
            false => println!(
                "  source {}: {} records read (old), {} (new)",
                read.subtask, read.old, read.new
            ),
        }
    }
    report.sinks.iter().for_each(print_sink);
    report.states.iter().for_each(print_state);
    for skipped in &report.not_compared {
        let reason = escaped(&skipped.reason);
        println!("  state `{}`: not compared: {reason}", skipped.operator);
    }
    match report.agrees() {
        true => println!("no difference"),
        false => println!("the jobs differ"),
    }
}

fn print_sink(sink: &SinkDiff) {
    let (old, new, differing) = (sink.old_records, sink.new_records, sink.keys_differing);
    let verdict = verdict(differing);
    println!(
        "  sink `{}`: {old} records (old), {new} (new): {verdict}",
        sink.operator
    );
    for RecordDiff { key, old, new } in &sink.first {
        let side = |record: &Option<host::shadow::diff::Shown>| match record {
            Some(r) => format!("{} (timestamp {})", r.value, r.timestamp),
            None => "none".to_owned(),
        };
        let line = format!("key {key}: old {}, new {}", side(old), side(new));
        println!("      {}", escaped(&line));
    }
}

fn print_state(state: &StateDiff) {
    let (old, new, differing) = (state.old_keys, state.new_keys, state.keys_differing);
    let verdict = verdict(differing);
    println!(
        "  state `{}`: {old} keys (old), {new} (new): {verdict}",
        state.operator
    );
    for value in &state.first {
        let side = |v: &Option<Json>| v.as_ref().map_or("none".to_owned(), Json::to_string);
        let line = format!(
            "key {}: old {}, new {}",
            value.key,
            side(&value.old),
            side(&value.new)
        );
        println!("      {}", escaped(&line));
    }
}

fn verdict(differing: u64) -> String {
    match differing {
        0 => "no difference".to_owned(),
        1 => "1 key differs".to_owned(),
        n => format!("{n} keys differ"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_with_their_unit() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("30").unwrap_err().contains("unit"));
        assert!(parse_duration("s").is_err());
    }
}
