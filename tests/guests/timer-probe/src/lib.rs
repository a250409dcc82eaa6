//! A timed operator for the time tests, on the host's timers directly (the `timed-operator`
//! world through `wit-bindgen`, no SDK), keyed by the records' keys (put it behind a `key-by`
//! edge):
//!
//! - with config key `window_ms` (above 0): counts each key's records in tumbling event-time
//!   windows of that length, registering an event-time timer at each window's last
//!   millisecond; when it fires, emits `window <key> <end> <count>` and forgets the window;
//! - with config key `heartbeat_ms` (above 0, and the clock grant): each record of a key moves
//!   that key's processing-time timer to `heartbeat_ms` after now (deleting the previous one);
//!   when it fires, emits `alert <key>` (no heartbeat for that long).
//!
//! A timer firing with nothing to emit for it emits `orphan <key> <time>`. Its keyed state
//! (the open windows and the deadline of each key) is written whole per key group, every group
//! that changed; it has no operator state. Emitted records have an empty key, the text as
//! value, and the timer's time as timestamp.

#![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use jobhost_batch::{BatchBuilder, Columns, Records};

wit_bindgen::generate!({
    world: "timed-operator",
    path: "../../../wit",
});

use exports::jobhost::operator::catch_up::Guest as CatchUp;
use jobhost::operator::timers;
use jobhost::operator::types::{KeyGroupState, Rescale};

/// One key's state.
#[derive(Default)]
struct Key {
    /// Records counted per window, by the window's last millisecond.
    windows: BTreeMap<i64, u64>,
    /// When its no-heartbeat timer fires.
    deadline: Option<i64>,
}

#[derive(Default)]
struct Probe {
    window_ms: i64,
    heartbeat_ms: i64,
    max_parallelism: u32,
    /// Keys by key group, then by key.
    groups: BTreeMap<u32, BTreeMap<Vec<u8>, Key>>,
    /// Groups changed since the last snapshot.
    changed: BTreeSet<u32>,
}

thread_local! {
    static PROBE: RefCell<Probe> = RefCell::new(Probe::default());
}

fn config(ctx: &Context, key: &str) -> Result<i64, String> {
    match ctx.config.iter().find(|(k, _)| k == key) {
        None => Ok(0),
        Some((_, v)) => v
            .parse()
            .map_err(|_| format!("config key `{key}`: `{v}` is not valid")),
    }
}

fn now_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| d.as_millis() as i64)
}

fn columns(batch: &Batch) -> Columns<'_> {
    Columns {
        keys: &batch.keys,
        key_ends: &batch.key_ends,
        values: &batch.values,
        value_ends: &batch.value_ends,
        timestamps: &batch.timestamps,
        key_groups: &batch.key_groups,
    }
}

fn into_batch(builder: BatchBuilder) -> Batch {
    let parts = builder.finish();
    Batch {
        keys: parts.keys,
        key_ends: parts.key_ends,
        values: parts.values,
        value_ends: parts.value_ends,
        timestamps: parts.timestamps,
        key_groups: Vec::new(),
    }
}

impl Probe {
    fn record(&mut self, key: &[u8], group: u32, timestamp: i64) -> Result<(), String> {
        let state = self.groups.entry(group).or_default();
        let entry = state.entry(key.to_vec()).or_default();
        if self.window_ms > 0 {
            let end = timestamp.div_euclid(self.window_ms) * self.window_ms + self.window_ms - 1;
            *entry.windows.entry(end).or_default() += 1;
            timers::register(key, end, TimeDomain::EventTime)?;
        }
        if self.heartbeat_ms > 0 {
            if let Some(previous) = entry.deadline {
                timers::delete(key, previous, TimeDomain::ProcessingTime);
            }
            let deadline = now_ms() + self.heartbeat_ms;
            entry.deadline = Some(deadline);
            timers::register(key, deadline, TimeDomain::ProcessingTime)?;
        }
        self.changed.insert(group);
        Ok(())
    }

    fn fired(&mut self, domain: TimeDomain, key: &[u8], group: u32, at: i64) -> String {
        self.changed.insert(group);
        let shown = String::from_utf8_lossy(key).into_owned();
        let state = self.groups.entry(group).or_default();
        let Some(entry) = state.get_mut(key) else {
            return format!("orphan {shown} {at}");
        };
        let line = match domain {
            TimeDomain::EventTime => match entry.windows.remove(&at) {
                Some(count) => format!("window {shown} {at} {count}"),
                None => format!("orphan {shown} {at}"),
            },
            TimeDomain::ProcessingTime if entry.deadline == Some(at) => {
                entry.deadline = None;
                format!("alert {shown}")
            }
            TimeDomain::ProcessingTime => format!("orphan {shown} {at}"),
        };
        if entry.windows.is_empty() && entry.deadline.is_none() {
            state.remove(key);
        }
        line
    }

    /// A group's keys: for each, its key, its windows, its deadline (i64::MIN for none).
    fn encode(keys: &BTreeMap<Vec<u8>, Key>) -> Vec<u8> {
        let mut out = Vec::new();
        for (key, state) in keys {
            out.extend_from_slice(&(key.len() as u32).to_le_bytes());
            out.extend_from_slice(key);
            out.extend_from_slice(&(state.windows.len() as u32).to_le_bytes());
            for (end, count) in &state.windows {
                out.extend_from_slice(&end.to_le_bytes());
                out.extend_from_slice(&count.to_le_bytes());
            }
            out.extend_from_slice(&state.deadline.unwrap_or(i64::MIN).to_le_bytes());
        }
        out
    }

    fn decode(mut bytes: &[u8]) -> Result<BTreeMap<Vec<u8>, Key>, String> {
        fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
            if bytes.len() < n {
                return Err("timer-probe: truncated state".to_owned());
            }
            let (head, rest) = bytes.split_at(n);
            *bytes = rest;
            Ok(head)
        }
        let u32_of = |b: &[u8]| u32::from_le_bytes(b.try_into().unwrap()) as usize;
        let i64_of = |b: &[u8]| i64::from_le_bytes(b.try_into().unwrap());
        let mut keys = BTreeMap::new();
        while !bytes.is_empty() {
            let len = u32_of(take(&mut bytes, 4)?);
            let key = take(&mut bytes, len)?.to_vec();
            let mut state = Key::default();
            for _ in 0..u32_of(take(&mut bytes, 4)?) {
                let end = i64_of(take(&mut bytes, 8)?);
                let count = i64_of(take(&mut bytes, 8)?) as u64;
                state.windows.insert(end, count);
            }
            let deadline = i64_of(take(&mut bytes, 8)?);
            state.deadline = (deadline != i64::MIN).then_some(deadline);
            keys.insert(key, state);
        }
        Ok(keys)
    }

    /// Replaces the state of the groups listed (whole only: it writes no deltas).
    fn load(&mut self, groups: Vec<KeyGroupState>) -> Result<(), String> {
        for group in groups {
            if group.delta {
                return Err("timer-probe: it writes no deltas".to_owned());
            }
            let keys = Probe::decode(&group.state)?;
            self.changed.insert(group.key_group);
            match keys.is_empty() {
                true => drop(self.groups.remove(&group.key_group)),
                false => drop(self.groups.insert(group.key_group, keys)),
            }
        }
        Ok(())
    }
}

struct Component;

impl Guest for Component {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "timer-probe".to_owned(),
            version: "1.0.0".to_owned(),
            rescale: Rescale::Refuse,
        }
    }

    fn init(ctx: Context) -> Result<(), String> {
        PROBE.with_borrow_mut(|probe| {
            probe.window_ms = config(&ctx, "window_ms")?;
            probe.heartbeat_ms = config(&ctx, "heartbeat_ms")?;
            probe.max_parallelism = ctx.max_parallelism;
            Ok(())
        })
    }

    fn snapshot(_checkpoint: u64, full: bool) -> Result<Snapshot, String> {
        PROBE.with_borrow_mut(|probe| {
            let listed: Vec<u32> = match full {
                true => probe.groups.keys().copied().collect(),
                false => std::mem::take(&mut probe.changed).into_iter().collect(),
            };
            probe.changed.clear();
            let key_groups = listed.into_iter().map(|group| KeyGroupState {
                key_group: group,
                delta: false,
                state: probe.groups.get(&group).map_or(Vec::new(), Probe::encode),
            });
            Ok(Snapshot {
                operator_state: Vec::new(),
                key_groups: key_groups.collect(),
            })
        })
    }

    fn restore(state: Restored, _origin: StateOrigin) -> Result<(), String> {
        PROBE.with_borrow_mut(|probe| {
            probe.load(state.key_groups)?;
            probe.changed.clear();
            Ok(())
        })
    }

    fn process(input: Batch) -> Result<Batch, String> {
        let records = Records::new(columns(&input)).map_err(|e| e.to_string())?;
        if !records.keyed() {
            return Err("timer-probe: put it behind a key-by edge".to_owned());
        }
        PROBE.with_borrow_mut(|probe| {
            for record in records {
                let group = record.key_group.expect("keyed");
                probe.record(record.key, group, record.timestamp)?;
            }
            Ok(into_batch(BatchBuilder::new()))
        })
    }

    fn on_timer(domain: TimeDomain, fired: Batch) -> Result<Batch, String> {
        let records = Records::new(columns(&fired)).map_err(|e| e.to_string())?;
        let mut output = BatchBuilder::new();
        PROBE.with_borrow_mut(|probe| {
            for timer in records {
                let group = timer
                    .key_group
                    .ok_or("timer-probe: a fired timer without group")?;
                let line = probe.fired(domain, timer.key, group, timer.timestamp);
                output.push(b"", line.as_bytes(), timer.timestamp)?;
            }
            Ok(into_batch(output))
        })
    }
}

impl CatchUp for Component {
    fn restore_changes(changes: Restored, _origin: StateOrigin) -> Result<(), String> {
        PROBE.with_borrow_mut(|probe| probe.load(changes.key_groups))
    }
}

export!(Component);
