//! Crash torture (guarantee 3 under fire): a seeded supervisor runs a job, kills the host with
//! `kill -9` at random moments, or while `host save` or `host stop --save` is under way, or
//! aborts it at a chosen phase of a checkpoint (with half a state file written, after
//! `_metadata` is written but before the rename, after publishing but before any sink commits,
//! after one sink committed) or of a resume (every subtask restored but no sink recovered; one
//! sink recovered), resumes with `run --from JOB_ID`, and repeats until the input is
//! exhausted; the committed output must be exact every round.
//!
//! Quick by default (20 kills); `just torture` runs 200 (`TORTURE_KILLS`), and
//! `TORTURE_SEED` replays a failure.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::util::{Dir, WordCount, assert_exactly_once, input_text};

const LINES: usize = 3_000;
/// Runs of one round before the supervisor declares it stuck.
const RUNS_PER_ROUND_MAX: u32 = 80;
/// Phases of a checkpoint where the host is aborted.
const CHECKPOINT_PHASES: [&str; 4] = [
    "state-write",
    "metadata-written",
    "published",
    "sink-committed",
];
/// Phases of a resume: every subtask restored, no sink recovered; one sink recovered.
const RESTORE_PHASES: [&str; 2] = ["restored", "sink-recovered"];

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

/// How one run of the job ends.
#[derive(Clone, Copy, Debug)]
enum Blow {
    /// Aborted at a phase (`--crash-at PHASE:N`).
    At(&'static str),
    /// `kill -9` at a random moment.
    Kill,
    /// `kill -9` while `host save` (or, with `true`, `host stop --save`) is under way.
    KillWhileSaving(bool),
}

/// Picks how the next run ends; the phases of a restore only strike a job that resumes.
fn choose(rng: &mut Rng, resuming: bool) -> Blow {
    let all = CHECKPOINT_PHASES.len() + RESTORE_PHASES.len() + 3;
    let choice = rng.below(all as u64) as usize;
    let restore = choice.checked_sub(CHECKPOINT_PHASES.len());
    match (CHECKPOINT_PHASES.get(choice), restore) {
        (Some(phase), _) => Blow::At(phase),
        (None, Some(i)) if i < RESTORE_PHASES.len() && resuming => Blow::At(RESTORE_PHASES[i]),
        (None, Some(i)) if i == RESTORE_PHASES.len() + 1 => Blow::KillWhileSaving(false),
        (None, Some(i)) if i == RESTORE_PHASES.len() + 2 => Blow::KillWhileSaving(true),
        _ => Blow::Kill,
    }
}

/// What one run did: whether the job finished its input, and the label of the kill if any.
struct Ran {
    job: String,
    finished: bool,
    kill: Option<&'static str>,
}

/// Runs `args` and deals `blow`; fails the test if the job fails for another reason.
fn run_once(dir: &Dir, rng: &mut Rng, args: &[&str], blow: Blow, seed: u64) -> Ran {
    let mut running = dir.start(args);
    let job = running.job.clone();
    let saving = match blow {
        Blow::At(phase) => {
            let (ok, stderr) = running.wait();
            let crashed = stderr.contains("crash injected at");
            assert!(ok || crashed, "seed {seed}: job {job} failed:\n{stderr}");
            let kill = crashed.then_some(phase);
            return Ran {
                job,
                finished: ok,
                kill,
            };
        }
        Blow::Kill => None,
        Blow::KillWhileSaving(stop) => {
            std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
            let command = match stop {
                true => vec!["stop", "--save", &job],
                false => vec!["save", &job],
            };
            Some(dir.spawn_host(&command))
        }
    };
    let delay_ms = if saving.is_some() {
        rng.below(40)
    } else {
        20 + rng.below(330)
    };
    std::thread::sleep(Duration::from_millis(delay_ms));
    let alive = running.child.try_wait().unwrap().is_none();
    let kill = alive.then_some(match blow {
        Blow::KillWhileSaving(true) => "kill -9 during stop --save",
        Blow::KillWhileSaving(false) => "kill -9 during save",
        _ => "random moment (kill -9)",
    });
    if alive {
        running.kill();
    } else {
        let (ok, stderr) = running.wait();
        assert!(ok, "seed {seed}: job {job} failed:\n{stderr}");
    }
    if let Some(mut save) = saving {
        let _ = save.wait();
    }
    // A job that ended by itself ran out of input, unless `stop --save` stopped it.
    let stopped = || {
        let listed = dir.host_ok(&["list"]);
        listed
            .lines()
            .any(|l| l.starts_with(&job) && l.contains("stopped"))
    };
    let finished = !alive && !stopped();
    Ran {
        job,
        finished,
        kill,
    }
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
            let blow = choose(&mut rng, previous.is_some());
            if let Blow::At(phase) = blow {
                let n = if RESTORE_PHASES.contains(&phase) {
                    1
                } else {
                    let base = previous
                        .as_deref()
                        .map_or(0, |p| newest_checkpoint(&dir, p));
                    base + 1 + rng.below(3)
                };
                args.extend(["--crash-at".to_owned(), format!("{phase}:{n}")]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let ran = run_once(&dir, &mut rng, &args, blow, seed);
            if let Some(label) = ran.kill {
                kills += 1;
                *landed.entry(label).or_default() += 1;
            }
            if ran.finished {
                finished = true;
                break;
            }
            let job_id = ran.job;
            // A job killed before it completed any checkpoint (and that resumed from nothing)
            // has nothing to resume from: the next run starts afresh, as a user would.
            let resumable = newest_checkpoint(&dir, &job_id) > 0
                || previous.is_some()
                || dir
                    .host_ok(&["savepoints", "--job", &job_id])
                    .contains("savepoint");
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
