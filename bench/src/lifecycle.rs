//! Benchmarks of the `host` binary as a user meets it, each step a separate process (see
//! [`crate::process`]): the downtime of an upgrade (`host stop --save`, then `host run NEW.toml
//! --from POINT` until the new module has processed its first batch), start-up from process
//! start to the first record at the sink, and the resident memory of an idle job.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use host::store::Store;

use crate::jobs::{SOURCE_MOUNT, edge, operator, write_input};
use crate::process::{HostHome, drop_page_cache, host_binary};
use crate::runs::Runs;
use crate::{Row, Sizes};

/// More records than any benchmark waits for: the source never runs dry.
const ENDLESS: u64 = 1 << 40;

/// The generator's rate in the second live upgrade: about 40 % of its flat-out rate here.
const LIVE_RATE: u64 = 500_000;

/// One upgrade to measure: a job, and the job that resumes from its savepoint.
struct Upgrade {
    /// What state, which modules.
    name: String,
    old: PathBuf,
    new: PathBuf,
    /// The subtask whose first batch in the new process counts (it runs the new module).
    subtask: &'static str,
}

/// What an upgrade took.
struct Downtime {
    /// From launching `host stop --save` until it returned.
    command: Duration,
    /// From launching it until the old process ended.
    stopped: Duration,
    /// From launching `host run --from` until the new module processed its first batch, the
    /// page cache dropped before each (where the machine allows).
    resumed: Runs,
    /// The same, each right after one of those, the page cache warm from it.
    resumed_warm: Runs,
    /// Whether the page cache was dropped before each cold run (untimed).
    cache_dropped: bool,
    /// The savepoint's folder.
    point: PathBuf,
}

fn write_job(dir: &Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), text)?;
    Ok(dir.join(name))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The peer job with `counter` (a module name) as its keyed count, its source never dry, and
/// as fast as it goes or limited to `rate` records a second.
fn counter_job(guests: &Path, keys: usize, counter: &str, rate: Option<u64>) -> String {
    let mut generator = format!("config = {{ records = \"{ENDLESS}\", keys = \"{keys}\" }}");
    if let Some(rate) = rate {
        generator += &format!("\nrecords_per_second_max = {rate}");
    }
    "checkpoint_interval_ms = 0\n".to_owned()
        + &operator(
            "generator",
            "source",
            &guests.join("generator.wasm"),
            1,
            &generator,
        )
        + &operator(
            "counter",
            "operator",
            &guests.join(format!("{counter}.wasm")),
            1,
            "",
        )
        + &operator("sink", "sink", &guests.join("null_sink.wasm"), 1, "")
        + &edge("generator", "counter", "key-by")
        + &edge("counter", "sink", "forward")
}

/// Lines (1 000 a second) through an operator carrying `bytes` of state to a null sink.
fn ballast_job(guests: &Path, bytes: usize) -> String {
    let source = format!("records_per_second_max = 1000\n{SOURCE_MOUNT}");
    let state = format!("memory_bytes_max = 1073741824\nconfig = {{ state_bytes = {bytes} }}");
    "checkpoint_interval_ms = 0\n".to_owned()
        + &operator(
            "lines",
            "source",
            &guests.join("line_source.wasm"),
            1,
            &source,
        )
        + &operator("state", "operator", &guests.join("ballast.wasm"), 1, &state)
        + &operator("sink", "sink", &guests.join("null_sink.wasm"), 1, "")
        + &edge("lines", "state", "forward")
        + &edge("state", "sink", "forward")
}

/// Upgrade downtime as a user meets it: the counter v1 -> v2 at `sizes.upgrade_keys` keys, and
/// `sizes.upgrade_state_bytes` of operator state (one module: the ballast has one version).
pub fn upgrade_downtime(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("upgrade");
    write_input(&dir, 200_000, 1_000)?;
    let home = HostHome::new(&host_binary()?, dir.join("home"));
    let mut rows = counter_upgrades(&home, &dir, guests, sizes)?;
    let bytes = sizes.upgrade_state_bytes;
    let ballast = Upgrade {
        name: format!("{} MiB of operator state, same module", bytes >> 20),
        old: write_job(&dir, "ballast.toml", &ballast_job(guests, bytes))?,
        new: dir.join("ballast.toml"),
        subtask: "state[0]",
    };
    let warm = Duration::from_millis(500);
    let measured = measure(&home, &ballast, warm, sizes.upgrade_runs)?;
    rows.extend(
        upgrade_rows(&ballast.name, &measured, 1_000.0)
            .into_iter()
            .take(1),
    );
    Ok(rows)
}

/// The counter v1 -> v2 through a savepoint and live: live with the generator flat out, then
/// limited to [`LIVE_RATE`].
fn counter_upgrades(
    home: &HostHome,
    dir: &Path,
    guests: &Path,
    sizes: Sizes,
) -> anyhow::Result<Vec<Row>> {
    let keys = sizes.upgrade_keys;
    let job = |file: &str, counter: &str, rate: Option<u64>| {
        write_job(dir, file, &counter_job(guests, keys, counter, rate))
    };
    let counter = Upgrade {
        name: format!("{} k keys, counter v1 -> v2", keys / 1_000),
        old: job("v1.toml", "counter_v1", None)?,
        new: job("v2.toml", "counter_v2", None)?,
        subtask: "counter[0]",
    };
    // v2's module compiled into the cache beforehand, as a trial run of v2 leaves it.
    let mut trial = home.run(&counter.new, None)?;
    trial.first_batch(counter.subtask)?;
    trial.terminate()?;
    let warm = Duration::from_millis(sizes.upgrade_warm_ms);
    let measured = measure(home, &counter, warm, sizes.upgrade_runs)?;
    let (next, distinct) = generator_position(home.path(), &measured.point, keys)?;
    let name = format!(
        "{} ({} k keys held after {} k records, {:.1} MiB savepoint)",
        counter.name,
        distinct / 1_000,
        next / 1_000,
        folder_bytes(&measured.point) as f64 / f64::from(1 << 20)
    );
    let mut rows = upgrade_rows(&name, &measured, 300.0);
    let runs = (warm, sizes.upgrade_runs);
    rows.push(live_swap(home, &counter, guests, runs, &measured)?);
    // The same with the state changing at a rate the job can sustain beside the catch-up.
    let flat_out = next as f64 / warm.as_secs_f64();
    let limited = Upgrade {
        name: format!(
            "{}, generator limited to {} k records/s ({:.0} % of the {:.0} k/s it ran at flat out \
             before `stop --save`)",
            counter.name,
            LIVE_RATE / 1_000,
            LIVE_RATE as f64 * 100.0 / flat_out,
            flat_out / 1e3
        ),
        old: job("v1-limited.toml", "counter_v1", Some(LIVE_RATE))?,
        ..counter
    };
    rows.push(live_swap(home, &limited, guests, runs, &measured)?);
    Ok(rows)
}

/// Runs the old job for `warm`, then times `host stop --save`, and `runs` times `host run NEW
/// --from` with the page cache dropped, each followed by one with it warm.
fn measure(
    home: &HostHome,
    upgrade: &Upgrade,
    warm: Duration,
    runs: usize,
) -> anyhow::Result<Downtime> {
    let mut old = home.run(&upgrade.old, None)?;
    let job = old.job_id()?;
    old.first_batch(upgrade.subtask)?;
    std::thread::sleep(warm);
    let stopping = Instant::now();
    let point = home.stop_save(&job)?;
    let command = stopping.elapsed();
    old.wait()?;
    let stopped = stopping.elapsed();
    let point_arg = point
        .to_str()
        .context("a savepoint folder that is not UTF-8")?;
    let (mut resumed, mut resumed_warm, mut cache_dropped) = (Vec::new(), Vec::new(), true);
    for _ in 0..runs {
        cache_dropped &= drop_page_cache();
        resumed.push(ms(resume(home, upgrade, point_arg)?));
        resumed_warm.push(ms(resume(home, upgrade, point_arg)?));
    }
    let (resumed, resumed_warm) = (Runs(resumed), Runs(resumed_warm));
    eprintln!(
        "bench: upgrade, {}: stop --save {:.0} ms (old process ended at {:.0} ms), run --from to first batch {:.0?} ms (each again, page cache warm: {:.0?} ms)",
        upgrade.name,
        ms(command),
        ms(stopped),
        resumed.0,
        resumed_warm.0
    );
    Ok(Downtime {
        command,
        stopped,
        resumed,
        resumed_warm,
        cache_dropped,
        point,
    })
}

/// `host run NEW --from POINT`, from process start to the new module's first batch.
fn resume(home: &HostHome, upgrade: &Upgrade, point: &str) -> anyhow::Result<Duration> {
    let mut new = home.run(&upgrade.new, Some(point))?;
    let resumed = new.first_batch(upgrade.subtask)? - new.started();
    new.terminate()?;
    Ok(resumed)
}

/// The same upgrade live (`host upgrade`, counter v1 -> v2 in the running job, at the same
/// state size), `runs` times, each in a job run for `warm` first: the pause it caused as the
/// host measures it, next to `downtime`.
fn live_swap(
    home: &HostHome,
    upgrade: &Upgrade,
    guests: &Path,
    (warm, runs): (Duration, usize),
    downtime: &Downtime,
) -> anyhow::Result<Row> {
    let (mut pauses, mut rounds) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let mut old = home.run(&upgrade.old, None)?;
        let job = old.job_id()?;
        old.first_batch(upgrade.subtask)?;
        std::thread::sleep(warm);
        let (pause, caught_up) = home.upgrade(&job, "counter", &guests.join("counter_v2.wasm"))?;
        old.terminate()?;
        pauses.push(pause);
        rounds.push(caught_up);
    }
    let pauses = Runs(pauses);
    let (pause, spread) = (pauses.median(), pauses.spread("ms"));
    let downtime = ms(downtime.stopped) + downtime.resumed.median();
    eprintln!(
        "bench: live upgrade, {}: pauses {:.1?} ms, after {rounds:?} rounds (stop --save and run --from: {downtime:.0} ms)",
        upgrade.name, pauses.0
    );
    let rounds = rounds
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Ok(Row {
        name: format!(
            "live upgrade pause, {}: `host upgrade` in the running job (v2 restored beside v1 \
             from one checkpoint, then caught up on v1's changes at {rounds} more, the last one \
             the swap's), from that last barrier's arrival at the counter to v2's first record \
             (a job for each run{spread}; stop --save and run --from of the same job, flat out: \
             {downtime:.0} ms)",
            upgrade.name
        ),
        value: pause,
        unit: "ms",
        baseline: Some(downtime),
        baseline_name: "stop --save and run --from",
        ratio: Some(downtime / pause.max(1e-3)),
        target: "≤ 50 ms",
        met: Some(pause <= 50.0),
    })
}

/// The rows of one upgrade: the whole downtime, then `run --from` alone (restore's target).
fn upgrade_rows(name: &str, d: &Downtime, target_ms: f64) -> Vec<Row> {
    let cache = if d.cache_dropped {
        "page cache dropped before `run --from` (untimed)"
    } else {
        "page cache warm"
    };
    let resumed = d.resumed.median();
    let total = ms(d.stopped) + resumed;
    let whole = Row {
        name: format!(
            "upgrade downtime, {name}: `host stop --save` until the old process ended ({:.0} ms, \
             the command {:.0} ms) + `host run NEW --from` to the new module's first batch \
             ({resumed:.0} ms{}); separate processes, {cache}",
            ms(d.stopped),
            ms(d.command),
            d.resumed.spread("ms"),
        ),
        value: total,
        unit: "ms",
        baseline: None,
        baseline_name: "",
        ratio: None,
        target: if target_ms < 1_000.0 {
            "≤ 300 ms"
        } else {
            "≤ 1 000 ms"
        },
        met: Some(total <= target_ms),
    };
    let mut rows = vec![whole, restore_row(name, cache, &d.resumed)];
    if d.cache_dropped {
        let again = "page cache warm (`run --from` of the same savepoint again, right after)";
        rows.push(restore_row(name, again, &d.resumed_warm));
    }
    rows
}

/// `run --from` alone, against restore's target.
fn restore_row(name: &str, cache: &str, resumed: &Runs) -> Row {
    let median = resumed.median();
    Row {
        name: format!(
            "upgrade restore, {name}: `host run NEW --from` process start to the new module's \
             first batch; {cache}{}",
            resumed.spread("ms")
        ),
        value: median,
        unit: "ms",
        baseline: None,
        baseline_name: "",
        ratio: None,
        target: "≤ 200 ms",
        met: Some(median <= 200.0),
    }
}

/// Where the generator stood in a point: records emitted, and the distinct keys among them
/// (the keys the counter holds), replaying the generator's key sequence.
fn generator_position(home: &Path, point: &Path, keys: usize) -> anyhow::Result<(u64, usize)> {
    let store = Store::at(home);
    let states = store.read_states(&store.read_point(point)?)?;
    let generator = "generator".parse().map_err(anyhow::Error::msg)?;
    let held = states
        .get(&(generator, 0))
        .context("no state of the generator in the savepoint")?;
    let (_version, rest): (u32, _) = postcard::take_from_bytes(&held.operator_state)?;
    let (next, _xorshift): (u64, u64) = postcard::from_bytes(rest)?;
    let mut seen = vec![false; keys];
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    for _ in 0..next {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        seen[(state % keys as u64) as usize] = true;
    }
    Ok((next, seen.iter().filter(|&&s| s).count()))
}

/// The bytes of the files in a point's folder.
fn folder_bytes(dir: &Path) -> u64 {
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    files
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Five operators, the source throttled to one line a second: the job of start-up and idle
/// memory.
fn five_operators(guests: &Path) -> String {
    let module = |name: &str| guests.join(format!("{name}.wasm"));
    let source = format!("records_per_second_max = 1\n{SOURCE_MOUNT}");
    operator("lines", "source", &module("line_source"), 1, &source)
        + &operator("tokenize", "operator", &module("tokenizer"), 1, "")
        + &operator("pass", "operator", &module("ballast"), 1, "")
        + &operator("counter", "operator", &module("counter_v1"), 1, "")
        + &operator("sink", "sink", &module("null_sink"), 1, "")
        + &edge("lines", "tokenize", "forward")
        + &edge("tokenize", "pass", "forward")
        + &edge("pass", "counter", "key-by")
        + &edge("counter", "sink", "forward")
}

/// `host run` of a 5-operator job, from process start to the sink's first batch: with an empty
/// compiled-module cache (a new state folder), then with the cache it left; and the resident
/// memory of the second, idle (its source throttled to one line a second).
pub fn startup_and_idle(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let dir = scratch.join("startup");
    write_input(&dir, 1_000, 100)?;
    let job = write_job(&dir, "job.toml", &five_operators(guests))?;
    let home = HostHome::new(&host_binary()?, dir.join("home"));
    let mut cold = home.run(&job, None)?;
    let cold_ms = ms(cold.first_batch("sink[0]")? - cold.started());
    cold.terminate()?;
    let mut warm = home.run(&job, None)?;
    let warm_ms = ms(warm.first_batch("sink[0]")? - warm.started());
    std::thread::sleep(Duration::from_millis(sizes.idle_settle_ms));
    let rss_mib = warm.rss_bytes()? as f64 / f64::from(1 << 20);
    warm.terminate()?;
    Ok(vec![
        Row {
            name: "start-up, 5 operators: `host run` process start to the sink's first batch, \
                   compiled-module cache warm"
                .to_owned(),
            value: warm_ms,
            unit: "ms",
            baseline: Some(cold_ms),
            baseline_name: "cold: empty cache folder, every component compiled",
            ratio: Some(cold_ms / warm_ms),
            target: "≤ 100 ms",
            met: Some(warm_ms <= 100.0),
        },
        Row {
            name: format!(
                "idle memory: VmRSS of `host run`, 5 operators, source throttled to 1 line/s, \
                 {:.0} s after the first record",
                sizes.idle_settle_ms as f64 / 1e3
            ),
            value: rss_mib,
            unit: "MiB",
            baseline: None,
            baseline_name: "",
            ratio: None,
            target: "≤ 30 MiB",
            met: Some(rss_mib <= 30.0),
        },
    ])
}
