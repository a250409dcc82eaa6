//! Watermarks: where a source's come from, and how a subtask combines its inputs'.
//!
//! A source subtask's [`Generator`] turns what its polls returned into in-band signals: a
//! watermark each time it advances (the greatest timestamp polled minus the job file's bound on
//! out-of-orderness, as Flink's `WatermarkStrategy.forBoundedOutOfOrderness`, or what the guest
//! declared through `emit-watermark`, whichever is greater), and `idle` once no record came for
//! the strategy's `idle_ms`. A subtask with inputs keeps a [`Valve`] (Flink's
//! `StatusWatermarkValve`): its watermark is the minimum over its inputs that are not idle, and
//! never goes back. Decisions only: the caller reads the clock and sends the signals.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{WATERMARK_END, WATERMARK_MIN};

/// A source's watermark strategy: the job file's `watermark = { out_of_orderness_ms = N,
/// idle_ms = M }`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Strategy {
    /// How far (in the records' milliseconds) a record may be behind the greatest timestamp
    /// polled before it: the watermark is that timestamp minus this, minus 1.
    #[serde(default)]
    pub out_of_orderness_ms: u64,
    /// After this long (wall clock) without records, the source subtask says it is idle, and
    /// its watermark holds no one back until its next record.
    #[serde(default)]
    pub idle_ms: Option<u64>,
}

/// What a subtask sends downstream about time, in band.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// No record with an earlier timestamp follows on this edge.
    Watermark(i64),
    /// Nothing follows on this edge for now: leave it out of the minimum until it sends a
    /// record or a watermark again.
    Idle,
}

/// A source subtask's watermarks. Performs no I/O: the caller passes the time.
#[derive(Debug)]
pub struct Generator {
    strategy: Option<Strategy>,
    /// The greatest timestamp polled.
    max_timestamp: Option<i64>,
    /// The greatest watermark the guest declared.
    declared: i64,
    /// The last watermark sent, or restored: none lower is ever sent.
    emitted: i64,
    /// When records (or a declared watermark) last came, or the generator started.
    active_at: Instant,
    /// Whether it said it is idle, since its last record.
    idle: bool,
}

impl Generator {
    /// A generator following `strategy` (none: only what the guest declares), resuming after
    /// the watermark `restored` a checkpoint recorded, started at `now`.
    pub fn new(strategy: Option<Strategy>, restored: Option<i64>, now: Instant) -> Self {
        Generator {
            strategy,
            max_timestamp: None,
            declared: WATERMARK_MIN,
            emitted: restored.unwrap_or(WATERMARK_MIN),
            active_at: now,
            idle: false,
        }
    }

    /// The watermark to send before anything else: the one restored, if any.
    pub fn resumed(&self) -> Option<Signal> {
        (self.emitted > WATERMARK_MIN).then_some(Signal::Watermark(self.emitted))
    }

    /// A poll returned records with these timestamps, at `now`.
    pub fn polled(&mut self, timestamps: &[i64], now: Instant) {
        let Some(&max) = timestamps.iter().max() else {
            return;
        };
        self.max_timestamp = Some(self.max_timestamp.map_or(max, |m| m.max(max)));
        self.active_at = now;
        self.idle = false;
    }

    /// The guest declared, at `now`, that no record below `watermark` follows.
    pub fn declared(&mut self, watermark: i64, now: Instant) {
        if watermark > self.declared {
            self.declared = watermark;
            self.active_at = now;
            self.idle = false;
        }
    }

    /// What to send after a poll at `now`: the watermark, if it advanced; else `Idle`, if the
    /// strategy's `idle_ms` passed without records since the source last was active.
    pub fn next(&mut self, now: Instant) -> Option<Signal> {
        let derived = match (self.strategy, self.max_timestamp) {
            (Some(strategy), Some(max)) => {
                let bound = i64::try_from(strategy.out_of_orderness_ms).unwrap_or(i64::MAX);
                max.saturating_sub(bound).saturating_sub(1)
            }
            _ => WATERMARK_MIN,
        };
        let candidate = derived.max(self.declared);
        if candidate > self.emitted {
            self.emitted = candidate;
            return Some(Signal::Watermark(candidate));
        }
        let idle_ms = self.strategy.and_then(|s| s.idle_ms)?;
        let quiet = now.saturating_duration_since(self.active_at);
        if !self.idle && quiet >= Duration::from_millis(idle_ms) {
            self.idle = true;
            return Some(Signal::Idle);
        }
        None
    }

    /// The source ran dry: event time ends.
    pub fn end(&mut self) -> Signal {
        self.emitted = WATERMARK_END;
        Signal::Watermark(WATERMARK_END)
    }

    /// The last watermark sent (or restored), for the checkpoint: a restored source never
    /// sends a lower one. None before the first.
    pub fn position(&self) -> Option<i64> {
        (self.emitted > WATERMARK_MIN).then_some(self.emitted)
    }
}

/// The watermark of a source resuming from the positions of the old subtasks it restores: the
/// least of them (any of them may have sent the least, which downstream had then reached).
/// None if none had sent one.
pub fn resumed_position(positions: impl IntoIterator<Item = Option<i64>>) -> Option<i64> {
    positions.into_iter().min().flatten()
}

/// One input's part in a [`Valve`].
#[derive(Clone, Copy, Debug)]
struct Input {
    watermark: i64,
    idle: bool,
}

/// The watermark of a subtask with inputs: the minimum over the inputs not idle, never going
/// back; idle itself when every input is. An input that ended keeps its last watermark (a
/// source that ran dry sent [`WATERMARK_END`] first). Performs no I/O.
#[derive(Debug)]
pub struct Valve {
    inputs: Vec<Input>,
    current: i64,
    idle: bool,
}

impl Valve {
    /// A valve over `inputs` inputs, each active, none with a watermark yet.
    pub fn new(inputs: usize) -> Self {
        Valve {
            inputs: vec![
                Input {
                    watermark: WATERMARK_MIN,
                    idle: false,
                };
                inputs
            ],
            current: WATERMARK_MIN,
            idle: false,
        }
    }

    /// The subtask's watermark.
    pub fn watermark(&self) -> i64 {
        self.current
    }

    /// Whether every input is idle (the subtask said so downstream).
    pub fn is_idle(&self) -> bool {
        self.idle
    }

    /// `input` sent watermark `watermark` (and so is active).
    pub fn on_watermark(&mut self, input: usize, watermark: i64) -> Option<Signal> {
        let input = &mut self.inputs[input];
        input.watermark = input.watermark.max(watermark);
        input.idle = false;
        self.settle()
    }

    /// `input` sent records (and so is active).
    pub fn on_records(&mut self, input: usize) -> Option<Signal> {
        if !std::mem::replace(&mut self.inputs[input].idle, false) {
            return None;
        }
        self.settle()
    }

    /// `input` said it is idle.
    pub fn on_idle(&mut self, input: usize) -> Option<Signal> {
        self.inputs[input].idle = true;
        self.settle()
    }

    /// What the subtask sends downstream after a change: its watermark if it advanced, or, when
    /// it turns active again, its watermark as it is (which makes it active downstream); `Idle`
    /// when it turns idle.
    fn settle(&mut self) -> Option<Signal> {
        let live = self.inputs.iter().filter(|i| !i.idle).map(|i| i.watermark);
        let Some(least) = live.min() else {
            return (!std::mem::replace(&mut self.idle, true)).then_some(Signal::Idle);
        };
        let was_idle = std::mem::replace(&mut self.idle, false);
        if least > self.current || was_idle {
            self.current = self.current.max(least);
            return Some(Signal::Watermark(self.current));
        }
        None
    }
}

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(out_of_orderness_ms: u64, idle_ms: Option<u64>) -> Option<Strategy> {
        Some(Strategy {
            out_of_orderness_ms,
            idle_ms,
        })
    }

    #[test]
    fn a_source_watermark_is_the_greatest_timestamp_less_the_bound_less_one() {
        let start = Instant::now();
        let mut generator = Generator::new(strategy(10, None), None, start);
        assert_eq!(generator.next(start), None, "no records, no watermark");
        generator.polled(&[100, 130, 120], start);
        assert_eq!(generator.next(start), Some(Signal::Watermark(119)));
        generator.polled(&[125], start);
        assert_eq!(generator.next(start), None, "it never goes back");
        generator.polled(&[131], start);
        assert_eq!(generator.next(start), Some(Signal::Watermark(120)));
        assert_eq!(generator.position(), Some(120));
        assert_eq!(generator.end(), Signal::Watermark(WATERMARK_END));
    }

    #[test]
    fn a_declared_watermark_counts_and_a_restored_one_is_a_floor() {
        let start = Instant::now();
        let mut generator = Generator::new(None, Some(500), start);
        assert_eq!(generator.resumed(), Some(Signal::Watermark(500)));
        generator.polled(&[10_000], start);
        assert_eq!(
            generator.next(start),
            None,
            "no strategy: timestamps give none"
        );
        generator.declared(400, start);
        assert_eq!(generator.next(start), None, "below the restored one");
        generator.declared(700, start);
        assert_eq!(generator.next(start), Some(Signal::Watermark(700)));
    }

    #[test]
    fn a_source_goes_idle_after_idle_ms_without_records_once_until_records_come() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut generator = Generator::new(strategy(0, Some(50)), None, start);
        assert_eq!(generator.next(at(49)), None);
        assert_eq!(generator.next(at(50)), Some(Signal::Idle));
        assert_eq!(generator.next(at(90)), None, "said once");
        generator.polled(&[7], at(100));
        assert_eq!(generator.next(at(100)), Some(Signal::Watermark(6)));
        assert_eq!(generator.next(at(149)), None);
        assert_eq!(generator.next(at(150)), Some(Signal::Idle));
    }

    #[test]
    fn the_valve_holds_the_minimum_of_its_active_inputs() {
        let mut valve = Valve::new(3);
        assert_eq!(valve.on_watermark(0, 10), None, "inputs 1 and 2 have none");
        assert_eq!(valve.on_watermark(1, 20), None);
        assert_eq!(valve.on_watermark(2, 5), Some(Signal::Watermark(5)));
        assert_eq!(valve.on_idle(2), Some(Signal::Watermark(10)));
        assert_eq!(
            valve.on_records(2),
            None,
            "back with 5, below 10: no change"
        );
        assert_eq!(valve.on_watermark(0, 30), None, "input 2 holds it at 10");
        assert_eq!(valve.on_watermark(2, 40), Some(Signal::Watermark(20)));
        assert_eq!(valve.watermark(), 20);
    }

    #[test]
    fn a_valve_whose_inputs_are_all_idle_is_idle_until_one_comes_back() {
        let mut valve = Valve::new(2);
        valve.on_watermark(0, 10);
        assert_eq!(valve.on_watermark(1, 10), Some(Signal::Watermark(10)));
        assert_eq!(valve.on_idle(0), None);
        assert_eq!(valve.on_idle(1), Some(Signal::Idle));
        assert!(valve.is_idle());
        assert_eq!(valve.on_idle(1), None, "said once");
        assert_eq!(
            valve.on_records(0),
            Some(Signal::Watermark(10)),
            "back: its watermark as it is, so that downstream counts it again"
        );
        assert!(!valve.is_idle());
    }
}
