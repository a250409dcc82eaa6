//! The report: the table printed at the end of a run, the run's record in `bench.json`, and
//! `docs/benchmarks.md` rendered from a committed `bench.json` (`bench --render`), so that every
//! figure on that page traces to the artifact beside it.

use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::Row;

/// Where the page's hand-written part begins: `--render` replaces what is above this line and
/// keeps what is below it (notes on the run: targets not met, what changed since).
pub const NOTES_MARKER: &str =
    "<!-- Below this line: written by hand. `bench --render` keeps it. -->";

/// What a run was: recorded in `bench.json` beside its rows.
#[derive(Serialize, Deserialize)]
pub struct Run {
    /// When it started, in seconds since the Unix epoch.
    pub started_unix_s: u64,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// The commit it was built from (`git rev-parse HEAD`), `-dirty` if the tree had changes.
    pub commit: String,
    /// The cores it could use.
    pub cores: usize,
    /// `release` or `debug`: the figures of a debug build mean nothing.
    pub profile: String,
    /// Small workloads: a smoke test, not a measurement.
    pub quick: bool,
}

impl Run {
    /// This run, started at `started_unix_s`, `seconds` ago.
    pub fn this(started_unix_s: u64, seconds: f64, quick: bool) -> Self {
        Run {
            started_unix_s,
            seconds,
            commit: commit(),
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_owned(),
            quick,
        }
    }
}

/// The commit this tree is at, or `unknown` outside a git checkout.
fn commit() -> String {
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        Some(head) if git(&["status", "--porcelain"]).is_some_and(|s| !s.is_empty()) => {
            format!("{head}-dirty")
        }
        Some(head) => head,
        None => "unknown".to_owned(),
    }
}

/// A row as `bench.json` holds it.
#[derive(Deserialize)]
pub struct Line {
    name: String,
    value: f64,
    unit: String,
    baseline: Option<f64>,
    baseline_name: String,
    ratio: Option<f64>,
    target: String,
    met: Option<bool>,
}

impl From<&Row> for Line {
    fn from(row: &Row) -> Self {
        Line {
            name: row.name.clone(),
            value: row.value,
            unit: row.unit.to_owned(),
            baseline: row.baseline,
            baseline_name: row.baseline_name.to_owned(),
            ratio: row.ratio,
            target: row.target.to_owned(),
            met: row.met,
        }
    }
}

/// `bench.json`, read back.
#[derive(Deserialize)]
struct Results {
    run: Option<Run>,
    rows: Vec<Line>,
}

/// The rows as a Markdown table (what a run prints, and the page's table).
pub fn table(rows: &[Line]) -> String {
    let mut out = String::from("| measurement | host | baseline | ratio | target | met |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for row in rows {
        let baseline = row.baseline.map_or(String::new(), |b| {
            format!("{} {} ({})", figure(b), row.unit, row.baseline_name)
        });
        let ratio = row.ratio.map_or(String::new(), |r| format!("{r:.2}×"));
        let met = match row.met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "",
        };
        let (name, value, unit, target) = (&row.name, figure(row.value), &row.unit, &row.target);
        out.push_str(&format!(
            "| {name} | {value} {unit} | {baseline} | {ratio} | {target} | {met} |\n"
        ));
    }
    out
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

/// What the page says of how to run and read the benchmarks, above the table.
const METHOD: &str = "\
`just bench` (after `./dev` has installed `just`; or `./dev bench`) measures the host against
baselines on the same machine in the same run, and reports ratios: these machines are shared and
noisy. `./dev bench --quick` finishes in under a minute; `--only`, `--words` and `--repetitions`
narrow a run down for profiling or A/B comparisons; CI runs the same quick workloads on the
test build as `./dev bench-smoke`. Results go to stdout as a table and to `bench.json` in cargo's
target directory (`target/`, unless `CARGO_TARGET_DIR` or cargo's configuration puts it elsewhere).
The upgrade, start-up, idle-memory, rescale, worker and connector rows run the real `host`
binary, the one built beside `bench` (`<target-dir>/<profile>/host`; both recipes build both).
The connector rows run against a NATS server and a PostgreSQL server that `tests/servers/`
installs (if missing) and starts, as the connector tests do; when they cannot start, the run
prints a line saying why and has no connector rows.

Each row compares the host with a baseline doing the same work in the same run, on the same
cores, and reports the ratio: these machines are shared and their speed drifts by a quarter or
more within minutes, so absolute figures from different runs do not compare. The upgrade rows
time each `run --from` and each live upgrade three times and give the median and the range;
the overhead rows are measured in pairs of adjacent runs, in alternating order. A row's label
says exactly what was timed, from which event to which.

This page is generated: copy a full run's `bench.json` to `docs/bench.json` and run
`target/release/bench --render docs/bench.json` (it rewrites `docs/benchmarks.md` above its
hand-written notes).
";

/// Renders `docs/benchmarks.md` from `json` (a full run's `bench.json`) into `page`, keeping
/// the notes below [`NOTES_MARKER`] if `page` has them.
pub fn render(json: &Path, page: &Path) -> anyhow::Result<()> {
    let text = std::fs::read(json).with_context(|| format!("reading {}", json.display()))?;
    let results: Results =
        serde_json::from_slice(&text).with_context(|| format!("decoding {}", json.display()))?;
    let run = results.run.with_context(|| {
        format!(
            "{}: no `run` record (written by a bench older than `--render`)",
            json.display()
        )
    })?;
    anyhow::ensure!(
        !run.quick && run.profile == "release",
        "{}: a {} run{}: its figures mean nothing; render a full release run",
        json.display(),
        run.profile,
        if run.quick { " with --quick" } else { "" }
    );
    let notes = match std::fs::read_to_string(page) {
        Ok(old) => old
            .split_once(NOTES_MARKER)
            .map(|(_, notes)| notes.to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", page.display())),
    };
    let json_name = json.file_name().map_or(json.display().to_string(), |n| {
        n.to_string_lossy().into_owned()
    });
    let out = format!(
        "# Benchmarks\n\n{METHOD}\n## The latest full run\n\nFrom [`{json_name}`]({json_name}): \
         commit `{}`, {} build, {} cores, started at {} (Unix seconds), {:.0} s in all. Targets \
         not met are marked **no**.\n\n{}\n{NOTES_MARKER}{}",
        run.commit,
        run.profile,
        run.cores,
        run.started_unix_s,
        run.seconds,
        table(&results.rows),
        notes.unwrap_or_else(|| "\n".to_owned()),
    );
    std::fs::write(page, out).with_context(|| format!("writing {}", page.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(quick: bool, profile: &str) -> String {
        serde_json::json!({
            "run": {"started_unix_s": 1, "seconds": 2.0, "commit": "abc", "cores": 2,
                    "profile": profile, "quick": quick},
            "rows": [{"name": "pipeline", "value": 1500.0, "unit": "records/s",
                      "baseline": 1000.0, "baseline_name": "native", "ratio": 1.5,
                      "target": "≥ 0.5×", "met": true}],
        })
        .to_string()
    }

    #[test]
    fn the_page_is_rendered_from_the_json_and_keeps_its_notes() {
        let dir = tempfile::tempdir().unwrap();
        let (json, page) = (
            dir.path().join("bench.json"),
            dir.path().join("benchmarks.md"),
        );
        std::fs::write(&json, results(false, "release")).unwrap();
        std::fs::write(
            &page,
            format!("old table\n{NOTES_MARKER}\n## Notes\nkept\n"),
        )
        .unwrap();
        render(&json, &page).unwrap();
        let text = std::fs::read_to_string(&page).unwrap();
        assert!(
            text.contains(
                "| pipeline | 1500 records/s | 1000 records/s (native) | 1.50× | ≥ 0.5× | yes |"
            ),
            "{text}"
        );
        assert!(
            text.contains("commit `abc`, release build, 2 cores"),
            "{text}"
        );
        assert!(
            text.ends_with(&format!("{NOTES_MARKER}\n## Notes\nkept\n")),
            "{text}"
        );
        assert!(!text.contains("old table"), "{text}");
        // Rendering again changes nothing.
        render(&json, &page).unwrap();
        assert_eq!(std::fs::read_to_string(&page).unwrap(), text);
    }

    #[test]
    fn a_quick_or_debug_run_is_not_rendered() {
        let dir = tempfile::tempdir().unwrap();
        let (json, page) = (
            dir.path().join("bench.json"),
            dir.path().join("benchmarks.md"),
        );
        for (quick, profile) in [(true, "release"), (false, "debug")] {
            std::fs::write(&json, results(quick, profile)).unwrap();
            let error = render(&json, &page).unwrap_err().to_string();
            assert!(error.contains("mean nothing"), "{error}");
            assert!(!page.exists());
        }
    }
}
