//! Crash torture (guarantee 3 under fire): a seeded supervisor runs a job, kills the host with
//! `kill -9` at random moments, or while `host save` or `host stop --save` is under way, or
//! aborts it at a chosen phase of a checkpoint (with half a state file written, after
//! `_metadata` is written but before the rename, after publishing but before any sink commits,
//! after one sink committed) or of a resume (every subtask restored but no sink recovered; one
//! sink recovered), resumes with `run --from JOB_ID`, and repeats until the input is
//! exhausted; the committed output must be exact every round. A phase counts as struck when
//! the host reports aborting there; a kill counts as during a save only if the save was still
//! under way when it landed. Past its kill count, the supervisor goes on (within a bound) until
//! every phase was struck at least once, and fails if one never was.
//!
//! Quick by default (20 kills); `just torture` runs 200 (`TORTURE_KILLS`), and
//! `TORTURE_SEED` replays a failure. `crash::phases` strikes each phase deterministically.
//! The supervisor takes any job that counts words ([`Target`]): `connectors` runs it with a
//! JetStream source and a PostgreSQL sink.

use std::collections::BTreeMap;
use std::process::Child;
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
/// Rounds begun past the kills wanted, at most, to strike every phase at least once.
const EXTRA_ROUNDS_MAX: u32 = 10;

/// The supervisor's random numbers (xorshift), from its seed.
pub struct Rng(u64);

impl Rng {
    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
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

/// Picks how the next run ends: one of the `missing` phases if one can strike now, else at
/// random; the phases of a restore only strike a job that resumes.
fn choose(rng: &mut Rng, resuming: bool, missing: &[&'static str]) -> Blow {
    let possible: Vec<_> = missing
        .iter()
        .filter(|p| resuming || !RESTORE_PHASES.contains(p))
        .collect();
    if !possible.is_empty() {
        return Blow::At(possible[rng.below(possible.len() as u64) as usize]);
    }
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

/// The phase the host reported aborting at (`crash injected at PHASE of checkpoint N`).
fn struck_phase(stderr: &str) -> Option<&'static str> {
    let line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("crash injected at "))?;
    let named = line.split(" of checkpoint ").next()?;
    let phase = CHECKPOINT_PHASES.iter().chain(&RESTORE_PHASES);
    Some(phase.copied().find(|&p| p == named).unwrap_or_else(|| {
        panic!("unknown phase in `{line}`");
    }))
}

/// What one run did: whether the job finished its input, and the label of the kill if any.
struct Ran {
    job: String,
    finished: bool,
    kill: Option<&'static str>,
}

/// Runs `args`, which aim `--crash-at` at `phase`; fails the test if the job fails for another
/// reason, or the host reports striking another phase.
fn crash_once(dir: &Dir, args: &[&str], phase: &str, seed: u64) -> Ran {
    let running = dir.start(args);
    let job = running.job.clone();
    let (ok, stderr) = running.wait();
    let struck = struck_phase(&stderr);
    assert!(
        ok || struck.is_some(),
        "seed {seed}: job {job} failed:\n{stderr}"
    );
    assert!(
        struck.is_none_or(|s| s == phase),
        "seed {seed}: job {job} aimed at {phase}, struck {struck:?}"
    );
    Ran {
        job,
        finished: ok,
        kill: struck,
    }
}

/// `host save JOB` (or `host stop --save JOB`) in the background.
fn start_saving(dir: &Dir, job: &str, stop: bool) -> Child {
    match stop {
        true => dir.spawn_host(&["stop", "--save", job]),
        false => dir.spawn_host(&["save", job]),
    }
}

/// Whether `save`, which had not returned when the job was killed, then failed because the
/// job's control connection broke under it: the kill landed while the save was under way.
fn broken_by_the_kill(save: Child) -> bool {
    let output = save.wait_with_output().unwrap();
    !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("control socket")
}

/// Whether `host list` shows `job` stopped (by `stop --save`).
fn stopped(dir: &Dir, job: &str) -> bool {
    let listed = dir.host_ok(&["list"]);
    listed
        .lines()
        .any(|l| l.starts_with(job) && l.contains("stopped"))
}

/// Runs `args` and `kill -9`s the host at a random moment, or (`KillWhileSaving`) once a save
/// is under way; fails the test if the job fails for another reason. A kill counts as one
/// during a save only if the save had not returned when it landed, and then failed for it.
fn kill_once(dir: &Dir, rng: &mut Rng, args: &[&str], blow: Blow, seed: u64) -> Ran {
    let mut running = dir.start(args);
    let job = running.job.clone();
    let mut saving = match blow {
        Blow::KillWhileSaving(stop) => {
            std::thread::sleep(Duration::from_millis(20 + rng.below(300)));
            Some(start_saving(dir, &job, stop))
        }
        _ => None,
    };
    let delay_ms = match saving {
        Some(_) => rng.below(40),
        None => 20 + rng.below(330),
    };
    std::thread::sleep(Duration::from_millis(delay_ms));
    let alive = running.child.try_wait().unwrap().is_none();
    let in_flight = saving
        .as_mut()
        .is_some_and(|save| save.try_wait().unwrap().is_none());
    if alive {
        running.kill();
    } else {
        let (ok, stderr) = running.wait();
        assert!(ok, "seed {seed}: job {job} failed:\n{stderr}");
    }
    let broken = saving.is_some_and(|save| broken_by_the_kill(save) && in_flight && alive);
    let kill = alive.then_some(match blow {
        Blow::KillWhileSaving(true) if broken => "kill -9 during stop --save",
        Blow::KillWhileSaving(false) if broken => "kill -9 during save",
        _ => "random moment (kill -9)",
    });
    // A job that ended by itself ran out of input, unless `stop --save` stopped it.
    let finished = !alive && !stopped(dir, &job);
    Ran {
        job,
        finished,
        kill,
    }
}

/// The supervisor's tally: kills by label (a phase, or how a `kill -9` landed).
#[derive(Default)]
struct Tally {
    kills: u64,
    landed: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// The phases of a checkpoint or a restore not struck yet.
    fn missing(&self) -> Vec<&'static str> {
        let phases = CHECKPOINT_PHASES.iter().chain(&RESTORE_PHASES);
        phases
            .copied()
            .filter(|p| !self.landed.contains_key(p))
            .collect()
    }

    /// Every kill, by label.
    fn report(&self) -> String {
        let lines = self.landed.iter();
        let lines = lines.map(|(label, count)| format!("  {label:<26} {count}\n"));
        lines.collect()
    }
}

/// Reads what a job's sink has committed, given its scratch folder.
pub type Committed = Box<dyn Fn(&Dir) -> Vec<String>>;

/// What a round runs: a job file on a fresh input, in a scratch folder of its own, and where
/// the job's sink commits its output.
pub struct Target {
    /// The scratch folder (its state folder is the job's).
    pub dir: Dir,
    /// The job file.
    pub job_file: String,
    /// The input, whose word counts the committed output must hold exactly once.
    pub input: String,
    /// What the sink has committed so far.
    pub committed: Committed,
}

/// The word count of the torture: lines from a file, counts to the file sink.
fn file_target(rng: &mut Rng) -> Target {
    let dir = Dir::new(LINES);
    let job = dir.write_job(&WordCount {
        checkpoint_interval_ms: 40 + rng.below(120),
        lines_per_second: 4_000,
        ..WordCount::default()
    });
    Target {
        job_file: job.to_str().unwrap().to_owned(),
        dir,
        input: input_text(LINES),
        committed: Box::new(Dir::committed_output),
    }
}

/// One round: a fresh job on a fresh input, killed, resumed and killed again until it has
/// finished its input; the committed output must then be exact. Once `kills_wanted` have
/// landed, each run aims at a phase not struck yet.
fn round(rng: &mut Rng, tally: &mut Tally, kills_wanted: u64, seed: u64, target: &Target) {
    let dir = &target.dir;
    let job = target.job_file.clone();
    let mut previous: Option<String> = None;
    for _ in 0..RUNS_PER_ROUND_MAX {
        let mut args = vec![job.clone()];
        if let Some(previous) = &previous {
            args.extend(["--from".to_owned(), previous.clone()]);
        }
        let missing = match tally.kills < kills_wanted {
            true => Vec::new(),
            false => tally.missing(),
        };
        let blow = choose(rng, previous.is_some(), &missing);
        if let Blow::At(phase) = blow {
            let n = if RESTORE_PHASES.contains(&phase) {
                1
            } else {
                let base = previous.as_deref().map_or(0, |p| newest_checkpoint(dir, p));
                base + 1 + rng.below(3)
            };
            args.extend(["--crash-at".to_owned(), format!("{phase}:{n}")]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let ran = match blow {
            Blow::At(phase) => crash_once(dir, &args, phase, seed),
            _ => kill_once(dir, rng, &args, blow, seed),
        };
        if let Some(label) = ran.kill {
            tally.kills += 1;
            *tally.landed.entry(label).or_default() += 1;
        }
        if ran.finished {
            assert_exactly_once(&(target.committed)(dir), &target.input);
            return;
        }
        previous = resumable(dir, ran.job, previous.is_some());
    }
    panic!("seed {seed}: a round did not finish within {RUNS_PER_ROUND_MAX} runs");
}

/// The job to resume from after `job` was killed, if any. A job killed before it completed
/// any checkpoint (and that resumed from nothing) has nothing to resume from: the next run
/// starts afresh, as a user would.
fn resumable(dir: &Dir, job: String, resumed: bool) -> Option<String> {
    let resumable = newest_checkpoint(dir, &job) > 0
        || resumed
        || dir
            .host_ok(&["savepoints", "--job", &job])
            .contains("savepoint");
    resumable.then_some(job)
}

#[test]
fn torture_kill_the_host_anywhere_and_lose_nothing() {
    let kills_wanted = env_number("TORTURE_KILLS").unwrap_or(20);
    supervise("torture", kills_wanted, &mut file_target);
}

/// The seeded supervisor (`name` in what it prints): rounds of jobs that `fresh` makes, until
/// `kills_wanted` kills landed and every phase was struck (within a bound), each round's
/// committed output exact. `TORTURE_SEED` replays a seed.
pub fn supervise(name: &str, kills_wanted: u64, fresh: &mut dyn FnMut(&mut Rng) -> Target) {
    let seed = env_number("TORTURE_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1
    });
    eprintln!("{name}: seed {seed} (TORTURE_SEED={seed} replays it), {kills_wanted} kills");
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    let (mut rounds, mut extra_rounds) = (0, 0);
    // Past the kills wanted, it goes on until every phase was struck, within a bound.
    while tally.kills < kills_wanted
        || (!tally.missing().is_empty() && extra_rounds < EXTRA_ROUNDS_MAX)
    {
        extra_rounds += u32::from(tally.kills >= kills_wanted);
        rounds += 1;
        let target = fresh(&mut rng);
        round(&mut rng, &mut tally, kills_wanted, seed, &target);
    }
    let kills = tally.kills;
    eprintln!(
        "{name}: {kills} kills over {rounds} rounds, 0 records lost or repeated; kills by phase:\n{}",
        tally.report()
    );
    assert!(
        tally.missing().is_empty(),
        "seed {seed}: phases never struck in {kills} kills: {:?}; kills by phase:\n{}",
        tally.missing(),
        tally.report()
    );
}
