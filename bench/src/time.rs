//! Event time (issue 32): a windowed count against a native loop doing the same windowing, what
//! a timer costs end to end, and what a checkpoint of 1 M pending timers costs when 1 % of them
//! changed.
//!
//! 1. The window job: generator (timestamps `i`, watermark bound 0) -> key-by -> the SDK's
//!    `window-count` v1 (tumbling 10 s event-time count per key) -> null sink, one thread, run
//!    to its end (the source's end fires every open window); against a native loop over the
//!    same records in batches of the source's poll size: each key's open windows in a hash map,
//!    one timer per new window in a queue ordered by time (as the host's), the watermark
//!    advanced after each batch, the due windows fired and their results formatted as the
//!    guest formats them.
//! 2. Timer cost: generator -> key-by -> `timer_probe` with 1 ms windows (one event-time timer
//!    per record, each fired by the next batch's watermark, its `on-timer` emitting one record)
//!    -> null sink, against the same job with the probe's windows off (no timers): the
//!    difference per timer. Baseline: the host's own timer service (`TimerService`), natively,
//!    registering, finding due and deleting the same timers in the same batches.
//! 3. The checkpoint of the timer service with 1 M pending timers after 1 % of them moved: the
//!    pause (`TimerService::checkpoint`, the merge into the host's copy, homing its pieces: what
//!    a subtask does on its path for its timers) and the bytes written and published, against a
//!    full checkpoint of the same timers. The guest's keyed state is not in it (the keyed-state
//!    checkpoint rows measure that).

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use host::ids::JobId;
use host::key_group::key_group;
use host::runtime::subtask::POLL_RECORDS_MAX;
use host::snapshot::Held;
use host::time::Domain;
use host::time::timers::{Timer, TimerService};

use crate::checkpoints::Publisher;
use crate::jobs::{
    MAX_PARALLELISM, build, edge, fastest, generator_key, open, operator, run_to_end,
};
use crate::{Row, Sizes};

/// The window's length, in milliseconds of event time.
const WINDOW_MS: i64 = 10_000;

/// A job: the generator of `records` over `keys` (watermark bound 0) -> key-by -> `middle`
/// (module and extra lines) -> null sink, no checkpoints.
fn timed_job(guests: &Path, records: usize, keys: usize, middle: (&str, &str)) -> String {
    let source = format!(
        "config = {{ records = \"{records}\", keys = \"{keys}\" }}\n\
         watermark = {{ out_of_orderness_ms = 0 }}"
    );
    let (module, extra) = middle;
    "checkpoint_interval_ms = 0\n".to_owned()
        + &operator(
            "generator",
            "source",
            &guests.join("generator.wasm"),
            1,
            &source,
        )
        + &operator("timed", "operator", &guests.join(module), 1, extra)
        + &operator("sink", "sink", &guests.join("null_sink.wasm"), 1, "")
        + &edge("generator", "timed", "key-by")
        + &edge("timed", "sink", "forward")
}

/// Runs each of `jobs` `repetitions` times on one thread, in turn; the fastest run of each.
fn fastest_runs(
    dir: &Path,
    jobs: &[&str],
    repetitions: usize,
    mut between: impl FnMut(),
) -> anyhow::Result<Vec<Duration>> {
    std::fs::create_dir_all(dir)?;
    let one_thread = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (store, engine) = open(dir)?;
    let mut times = vec![Vec::new(); jobs.len()];
    for _ in 0..repetitions {
        between();
        for (text, times) in jobs.iter().zip(&mut times) {
            let built =
                one_thread.block_on(build(&engine, &store, dir, text, JobId::generate()))?;
            times.push(one_thread.block_on(run_to_end(built))?);
        }
    }
    Ok(times.iter().map(|t| fastest(t)).collect())
}

/// The window job's work natively: the generator's records in batches of the source's poll
/// size; each key's open windows (end, count) in a hash map; a timer (window end - 1, key) per
/// new window in an ordered queue; after each batch the watermark (greatest timestamp - 1)
/// fires the due windows, each formatted `key start end count=n` as the guest emits it.
fn native_windows(records: u64, keys: u64) -> usize {
    let mut open: hashbrown::HashMap<Vec<u8>, Vec<(i64, u64)>> = hashbrown::HashMap::default();
    let mut queue: BTreeSet<(i64, Vec<u8>)> = BTreeSet::new();
    let (mut state, mut key, mut value, mut out) =
        (0x2545_f491_4f6c_dd1d_u64, Vec::new(), Vec::new(), 0);
    let batch = u64::from(POLL_RECORDS_MAX);
    let mut i = 0;
    while i < records {
        let last = (i + batch).min(records);
        for t in i..last {
            generator_key(&mut state, keys, &mut key);
            let end = (t as i64).div_euclid(WINDOW_MS) * WINDOW_MS + WINDOW_MS;
            let windows = open.entry_ref(&key[..]).or_default();
            match windows.iter_mut().find(|(e, _)| *e == end) {
                Some((_, count)) => *count += 1,
                None => {
                    windows.push((end, 1));
                    queue.insert((end - 1, key.clone()));
                }
            }
        }
        let watermark = if last == records {
            i64::MAX
        } else {
            last as i64 - 2
        };
        out += fire_windows(&mut open, &mut queue, watermark, &mut value);
        i = last;
    }
    out
}

/// Fires the windows whose timers the watermark passed; returns the bytes emitted.
fn fire_windows(
    open: &mut hashbrown::HashMap<Vec<u8>, Vec<(i64, u64)>>,
    queue: &mut BTreeSet<(i64, Vec<u8>)>,
    watermark: i64,
    value: &mut Vec<u8>,
) -> usize {
    let mut out = 0;
    while queue.first().is_some_and(|(at, _)| *at <= watermark) {
        let (at, key) = queue.pop_first().expect("a first timer");
        let windows = open.get_mut(&key).expect("a timer's key has windows");
        let place = windows
            .iter()
            .position(|(e, _)| *e == at + 1)
            .expect("its window");
        let (end, count) = windows.swap_remove(place);
        if windows.is_empty() {
            open.remove(&key);
        }
        let mut number = itoa::Buffer::new();
        value.clear();
        value.extend_from_slice(&key);
        for n in [end - WINDOW_MS, end] {
            value.push(b' ');
            value.extend_from_slice(number.format(n).as_bytes());
        }
        value.extend_from_slice(b" count=");
        value.extend_from_slice(number.format(count).as_bytes());
        out += black_box(&value).len();
    }
    out
}

/// The window job against the native loop.
fn window_row(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Row> {
    let (records, keys) = (sizes.window_records, sizes.distinct_keys);
    let job = timed_job(guests, records, keys, ("window_count_v1.wasm", ""));
    let mut native = Vec::new();
    let hosted = fastest_runs(
        &scratch.join("windows"),
        &[job.as_str()],
        sizes.repetitions,
        || {
            let started = Instant::now();
            black_box(native_windows(records as u64, keys as u64));
            native.push(started.elapsed());
        },
    )?;
    let rate = |elapsed: Duration| records as f64 / elapsed.as_secs_f64();
    let (host, native) = (rate(hosted[0]), rate(fastest(&native)));
    Ok(Row {
        name: format!(
            "tumbling 10 s event-time count per key (SDK `window-count` v1), {} k keys, {} M \
             records (timestamps 1 ms apart: {} windows), 1 thread, generator to null sink, \
             run to its end",
            keys / 1_000,
            records as f64 / 1e6,
            (records as u64).div_ceil(WINDOW_MS as u64)
        ),
        value: host,
        unit: "records/s",
        baseline: Some(native),
        baseline_name: "native Rust, 1 thread, same records and windows: each key's open \
                        windows in a hash map, a timer queue ordered by time, the watermark \
                        advanced per batch of 1 024, results formatted alike",
        ratio: Some(host / native),
        target: "≥ 0.7× native",
        met: Some(host / native >= 0.7),
    })
}

/// The host's timer service alone, natively: `timers` event-time timers (one a record, key
/// as the generator's), registered in batches of the poll size, each batch's due ones listed
/// and deleted once the watermark passes them, as a subtask does.
fn native_timers(timers: u64, keys: u64) -> u64 {
    let mut service = TimerService::new(MAX_PARALLELISM);
    let (mut state, mut key, mut fired) = (0x2545_f491_4f6c_dd1d_u64, Vec::new(), 0);
    let batch = u64::from(POLL_RECORDS_MAX);
    let mut i = 0;
    while i < timers {
        let last = (i + batch).min(timers);
        for t in i..last {
            generator_key(&mut state, keys, &mut key);
            let timer = Timer {
                domain: Domain::Event,
                timestamp: t as i64,
                key: Bytes::copy_from_slice(&key),
            };
            service.register(key_group(&key, MAX_PARALLELISM), timer);
        }
        let watermark = if last == timers {
            i64::MAX
        } else {
            last as i64 - 2
        };
        for (group, timer) in service.due(Domain::Event, watermark) {
            fired += u64::from(service.delete(group, &timer));
        }
        i = last;
    }
    fired
}

/// What a timer costs end to end: the probe job with a timer per record against the same job
/// without timers, per timer; the timer service's own cost natively beside it.
fn timer_row(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Row> {
    let (timers, keys) = (sizes.timers, sizes.distinct_keys);
    let with = timed_job(
        guests,
        timers,
        keys,
        ("timer_probe.wasm", "config = { window_ms = \"1\" }"),
    );
    let without = timed_job(
        guests,
        timers,
        keys,
        ("timer_probe.wasm", "config = { window_ms = \"0\" }"),
    );
    let mut native = Vec::new();
    let hosted = fastest_runs(
        &scratch.join("timers"),
        &[with.as_str(), without.as_str()],
        sizes.repetitions,
        || {
            let started = Instant::now();
            black_box(native_timers(timers as u64, keys as u64));
            native.push(started.elapsed());
        },
    )?;
    let per_timer = |d: Duration| d.as_secs_f64() * 1e9 / timers as f64;
    let host = per_timer(hosted[0]) - per_timer(hosted[1]);
    let native = per_timer(fastest(&native));
    Ok(Row {
        name: format!(
            "event-time timer, registered and fired end to end ({} k timers, one a record, 1 \
             thread): (the `timer_probe` job with 1 ms windows − the same job with windows off, \
             {:.0} ns/record) / timers; includes `register`, the fire, `on-timer` and its record",
            timers / 1_000,
            per_timer(hosted[1])
        ),
        value: host,
        unit: "ns/timer",
        baseline: Some(native),
        baseline_name: "the host's `TimerService` alone, natively: register, due, delete",
        ratio: Some(native / host),
        target: "≤ 100 ns per timer",
        met: Some(host <= 100.0),
    })
}

/// One checkpoint of the timer service: its pause and the bytes it added.
struct TimerCheckpoint {
    pause: Duration,
    bytes: u64,
}

/// The timer service with `timers` pending timers, its host copy, and where it publishes.
struct TimerState {
    service: TimerService,
    held: Held,
    publisher: Publisher,
    /// How many times each timer moved.
    moves: Vec<u32>,
}

impl TimerState {
    /// Takes a checkpoint (`full`: every group whole): pause timed, then written and published.
    fn take(&mut self, full: bool) -> anyhow::Result<TimerCheckpoint> {
        let checkpoint = self.publisher.next_checkpoint();
        let started = Instant::now();
        let written = self.service.checkpoint(full);
        self.held.merge_timers(0..MAX_PARALLELISM, written, full)?;
        self.publisher.home(&mut self.held, checkpoint);
        let pause = started.elapsed();
        let bytes = self.publisher.write_and_publish(checkpoint, &self.held)?;
        Ok(TimerCheckpoint { pause, bytes })
    }

    /// Moves a different 1 % of the timers each round (deleted, registered later).
    fn move_one_percent(&mut self, round: u64) {
        let timers = self.moves.len() as u64;
        let changed = timers / 100;
        for n in (round * changed..(round + 1) * changed).map(|n| n % timers) {
            let moves = &mut self.moves[n as usize];
            let old = probe_timer(n, *moves);
            *moves += 1;
            let group = key_group(&old.key, MAX_PARALLELISM);
            assert!(self.service.delete(group, &old), "timer {n} is pending");
            self.service.register(group, probe_timer(n, *moves));
        }
    }
}

/// Timer `n`'s `k<n>` key and its time after `moves` moves.
fn probe_timer(n: u64, moves: u32) -> Timer {
    Timer {
        domain: Domain::Event,
        timestamp: (n + u64::from(moves) * 1_000_000_000) as i64,
        key: Bytes::from(format!("k{n}")),
    }
}

/// The pause and bytes of checkpoints of `sizes.checkpoint_timers` pending timers after 1 %
/// of them moved, against a full checkpoint of the same timers.
fn timer_checkpoint_rows(scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let timers = sizes.checkpoint_timers as u64;
    let mut state = TimerState {
        service: TimerService::new(MAX_PARALLELISM),
        held: Held::default(),
        publisher: Publisher::open(&scratch.join("timers-home"), "job-timers", "timed")?,
        moves: vec![0; timers as usize],
    };
    for n in 0..timers {
        let timer = probe_timer(n, 0);
        state
            .service
            .register(key_group(&timer.key, MAX_PARALLELISM), timer);
    }
    let full = state.take(true)?;
    let mut rounds = Vec::new();
    for round in 0..sizes.checkpoint_rounds as u64 {
        state.move_one_percent(round);
        rounds.push(state.take(false)?);
    }
    let longest = rounds.iter().map(|r| r.pause).max().unwrap_or_default();
    let mean_bytes = rounds.iter().map(|r| r.bytes).sum::<u64>() as f64 / rounds.len() as f64;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let k = timers / 1_000;
    let n = rounds.len();
    Ok(vec![
        Row {
            name: format!(
                "checkpoint pause, {k} k pending event-time timers, 1 % moved (the host's timer \
                 service: its checkpoint, the merge into the host's copy, homing; longest of {n})"
            ),
            value: ms(longest),
            unit: "ms",
            baseline: Some(ms(full.pause)),
            baseline_name: "a full checkpoint of the same timers",
            ratio: Some(ms(full.pause) / ms(longest)),
            target: "≤ 10 ms at 1 M timers",
            met: Some(ms(longest) <= 10.0),
        },
        Row {
            name: format!(
                "checkpoint bytes, {k} k pending event-time timers, 1 % moved (mean of {n} \
                 published checkpoints, whole rewrites of groups included: the files each adds \
                 to the state folder)"
            ),
            value: mean_bytes,
            unit: "bytes",
            baseline: Some(full.bytes as f64),
            baseline_name: "a full checkpoint of the same timers, published alike",
            ratio: Some(full.bytes as f64 / mean_bytes),
            target: "≤ 3 % of a full one",
            met: Some(mean_bytes / full.bytes as f64 <= 0.03),
        },
    ])
}

/// Every row of the time benchmark.
pub fn time(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![window_row(guests, scratch, sizes)?];
    rows.push(timer_row(guests, scratch, sizes)?);
    rows.extend(timer_checkpoint_rows(scratch, sizes)?);
    Ok(rows)
}
