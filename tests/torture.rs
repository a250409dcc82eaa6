//! Crash torture (guarantee 3 under fire): a seeded supervisor runs a job, kills the host with
//! `kill -9` at random moments or aborts it at a chosen phase of a checkpoint (while a state
//! file is written, after `_metadata` is written but before the rename, after publishing but
//! before any sink commits, after one sink committed), resumes with `run --from JOB_ID`, and
//! repeats until the input is exhausted; the committed output must be exact every round.
//!
//! Quick by default (20 kills); `just torture` runs 200 (`TORTURE_KILLS`), and
//! `TORTURE_SEED` replays a failure.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::util::{Dir, WordCount, assert_exactly_once, input_text};

const LINES: usize = 3_000;
/// Runs of one round before the supervisor declares it stuck.
const RUNS_PER_ROUND_MAX: u32 = 80;
const PHASES: [&str; 4] = [
    "state-write",
    "metadata-written",
    "published",
    "sink-committed",
];

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number"))
    })
}

/// The newest completed checkpoint number of `job`, 0 if none.
fn newest_checkpoint(dir: &Dir, job: &str) -> u64 {
    let folder = dir.home().join("jobs").join(job).join("checkpoints");
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

#[test]
fn torture_kill_the_host_anywhere_and_lose_nothing() {
    let kills_wanted = env_number("TORTURE_KILLS").unwrap_or(20);
    let seed = env_number("TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("torture: seed {seed} (TORTURE_SEED={seed} replays it), {kills_wanted} kills");
    let mut rng = Rng(seed);
    let mut landed: BTreeMap<&str, u64> = BTreeMap::new();
    let mut kills = 0;
    let mut rounds = 0;
    while kills < kills_wanted {
        rounds += 1;
        let dir = Dir::new(LINES);
        let job = dir.write_job(&WordCount {
            checkpoint_interval_ms: 40 + rng.below(120),
            lines_per_second: 4_000,
            ..WordCount::default()
        });
        let job = job.to_str().unwrap().to_owned();
        let mut previous: Option<String> = None;
        let mut finished = false;
        for _ in 0..RUNS_PER_ROUND_MAX {
            let mut args = vec![job.clone()];
            if let Some(previous) = &previous {
                args.extend(["--from".to_owned(), previous.clone()]);
            }
            let choice = rng.below(PHASES.len() as u64 + 1) as usize;
            if let Some(phase) = PHASES.get(choice) {
                let base = previous
                    .as_deref()
                    .map_or(0, |p| newest_checkpoint(&dir, p));
                args.extend([
                    "--crash-at".to_owned(),
                    format!("{phase}:{}", base + 1 + rng.below(3)),
                ]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let running = dir.start(&args);
            let job_id = running.job.clone();
            if choice == PHASES.len() {
                std::thread::sleep(Duration::from_millis(20 + rng.below(330)));
                let mut running = running;
                if running.child.try_wait().unwrap().is_none() {
                    running.kill();
                    kills += 1;
                    *landed.entry("random moment (kill -9)").or_default() += 1;
                } else {
                    let (ok, stderr) = running.wait();
                    assert!(ok, "seed {seed}: job {job_id} failed:\n{stderr}");
                    finished = true;
                    break;
                }
            } else {
                let (ok, stderr) = running.wait();
                if ok {
                    finished = true;
                    break;
                }
                assert!(
                    stderr.contains("crash injected at"),
                    "seed {seed}: job {job_id} failed:\n{stderr}"
                );
                kills += 1;
                *landed.entry(PHASES[choice]).or_default() += 1;
            }
            // A job killed before it completed any checkpoint (and that resumed from nothing)
            // has nothing to resume from: the next run starts afresh, as a user would.
            let resumable = newest_checkpoint(&dir, &job_id) > 0 || previous.is_some();
            previous = resumable.then_some(job_id);
        }
        assert!(
            finished,
            "seed {seed}: round {rounds} did not finish within {RUNS_PER_ROUND_MAX} runs"
        );
        assert_exactly_once(&dir.committed_output(), &input_text(LINES));
    }
    eprintln!(
        "torture: {kills} kills over {rounds} rounds, 0 records lost or repeated; kills by phase:"
    );
    for (phase, count) in &landed {
        eprintln!("  {phase:<26} {count}");
    }
}
