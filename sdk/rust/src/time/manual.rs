//! A timer service kept in memory, for tests: the host's semantics (`timers` in
//! `wit/operator.wit`) without a host.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;

use super::{NO_WATERMARK, TimeDomain, TimerService};
use crate::{Batch, BatchBuilder};

/// A fired timer's key group, from its key.
type KeyGroupOf = Box<dyn Fn(&[u8]) -> u32>;

/// Pending timers by time, then key.
type Pending = BTreeSet<(i64, Vec<u8>)>;

/// A [`TimerService`] kept in memory, whose watermark and clock a test moves by hand: each move
/// hands back the timers it made fire, as the batch `on-timer` receives (keys and timestamps in
/// timestamp order, values empty, key groups set). As the host's: registering a timer twice is
/// one timer, the watermark never goes back, and an event-time timer at or below the watermark
/// fires with the next move.
pub struct ManualTimers {
    key_group: KeyGroupOf,
    state: RefCell<State>,
}

struct State {
    watermark: i64,
    clock: i64,
    event: Pending,
    processing: Pending,
}

impl ManualTimers {
    /// No timers, no watermark yet, the clock at 0; `key_group` gives a fired timer's key
    /// group (the host's is `xxh3-64(key) % max-parallelism`; a test may use any that fits the
    /// subtask's groups).
    pub fn new(key_group: impl Fn(&[u8]) -> u32 + 'static) -> Rc<Self> {
        Rc::new(Self {
            key_group: Box::new(key_group),
            state: RefCell::new(State {
                watermark: NO_WATERMARK,
                clock: 0,
                event: Pending::new(),
                processing: Pending::new(),
            }),
        })
    }

    /// Moves the watermark to `watermark` (never back) and returns the event-time timers due.
    pub fn advance_watermark(&self, watermark: i64) -> Batch {
        let mut state = self.state.borrow_mut();
        state.watermark = state.watermark.max(watermark);
        let now = state.watermark;
        self.fire(&mut state.event, now)
    }

    /// Moves the wall clock to `now` (never back) and returns the processing-time timers due.
    pub fn advance_clock(&self, now: i64) -> Batch {
        let mut state = self.state.borrow_mut();
        state.clock = state.clock.max(now);
        let now = state.clock;
        self.fire(&mut state.processing, now)
    }

    /// The pending timers of `domain`, `(key, timestamp)` in timestamp order.
    pub fn pending(&self, domain: TimeDomain) -> Vec<(Vec<u8>, i64)> {
        let state = self.state.borrow();
        let pending = match domain {
            TimeDomain::EventTime => &state.event,
            TimeDomain::ProcessingTime => &state.processing,
        };
        pending.iter().map(|(t, key)| (key.clone(), *t)).collect()
    }

    fn fire(&self, pending: &mut Pending, now: i64) -> Batch {
        let later = match now.checked_add(1) {
            Some(after) => pending.split_off(&(after, Vec::new())),
            None => Pending::new(),
        };
        let due = std::mem::replace(pending, later);
        let mut fired = BatchBuilder::new();
        let mut groups = Vec::with_capacity(due.len());
        for (timestamp, key) in &due {
            fired
                .push(key, b"", *timestamp)
                .expect("a test's timers fit a batch");
            groups.push((self.key_group)(key));
        }
        let mut fired: Batch = fired.into();
        fired.key_groups = groups;
        fired
    }
}

impl TimerService for ManualTimers {
    fn register(&self, key: &[u8], timestamp: i64, domain: TimeDomain) -> Result<(), String> {
        let mut state = self.state.borrow_mut();
        let pending = match domain {
            TimeDomain::EventTime => &mut state.event,
            TimeDomain::ProcessingTime => &mut state.processing,
        };
        pending.insert((timestamp, key.to_vec()));
        Ok(())
    }

    fn delete(&self, key: &[u8], timestamp: i64, domain: TimeDomain) {
        let mut state = self.state.borrow_mut();
        let pending = match domain {
            TimeDomain::EventTime => &mut state.event,
            TimeDomain::ProcessingTime => &mut state.processing,
        };
        pending.remove(&(timestamp, key.to_vec()));
    }

    fn watermark(&self) -> i64 {
        self.state.borrow().watermark
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records;

    fn fired(batch: &Batch) -> Vec<(&[u8], i64, Option<u32>)> {
        let read = records(batch).unwrap();
        read.map(|r| (r.key, r.timestamp, r.key_group)).collect()
    }

    #[test]
    fn timers_fire_in_time_order_once_and_the_watermark_never_goes_back() {
        let timers = ManualTimers::new(|key| u32::from(key[0]));
        timers.register(b"b", 10, TimeDomain::EventTime).unwrap();
        timers.register(b"a", 10, TimeDomain::EventTime).unwrap();
        timers.register(b"a", 10, TimeDomain::EventTime).unwrap();
        timers.register(b"c", 5, TimeDomain::EventTime).unwrap();
        timers.register(b"d", 20, TimeDomain::EventTime).unwrap();
        timers
            .register(b"e", 7, TimeDomain::ProcessingTime)
            .unwrap();
        timers.delete(b"d", 20, TimeDomain::EventTime);
        assert_eq!(timers.watermark(), NO_WATERMARK);
        assert!(fired(&timers.advance_watermark(4)).is_empty());
        let due = timers.advance_watermark(10);
        assert_eq!(
            fired(&due),
            [
                (&b"c"[..], 5, Some(99)),
                (b"a", 10, Some(97)),
                (b"b", 10, Some(98))
            ]
        );
        assert!(due.values.is_empty());
        assert_eq!(timers.advance_watermark(3).timestamps, [0i64; 0]);
        assert_eq!(timers.watermark(), 10);
        assert!(timers.pending(TimeDomain::EventTime).is_empty());
        assert_eq!(
            timers.pending(TimeDomain::ProcessingTime),
            [(b"e".to_vec(), 7)]
        );
        assert_eq!(fired(&timers.advance_clock(7)), [(&b"e"[..], 7, Some(101))]);
        // At the end of time, every timer is due.
        timers
            .register(b"z", i64::MAX, TimeDomain::EventTime)
            .unwrap();
        assert_eq!(timers.advance_watermark(i64::MAX).timestamps, [i64::MAX]);
    }
}
