//! Time for an operator: the subtask's event-time watermark and its timers per key, kept by the
//! host (`timers` in `wit/operator.wit`: checkpointed with the key's group, moved with it on
//! rescale, surviving upgrades), behind one small seam, [`TimerService`]:
//!
//! - in a component exported with [`export_timed_operator!`](crate::export_timed_operator) (or
//!   [`export_window_operator!`](crate::export_window_operator)), [`timers()`] reaches the
//!   host's timer service;
//! - natively (an operator's unit tests), [`install`] puts a [`ManualTimers`] there: a timer
//!   service kept in memory, whose watermark and clock a test moves by hand, handing back the
//!   timers that fired as the batch `on-timer` would receive.
//!
//! Times are milliseconds: event time as the records' timestamps, processing time since the
//! Unix epoch.

use std::cell::RefCell;
use std::rc::Rc;

pub use crate::bindings::types::TimeDomain;
pub use manual::ManualTimers;

/// The watermark before the first one: no record is late yet.
pub const NO_WATERMARK: i64 = i64::MIN;

/// Timers per key and the event-time watermark: what the host keeps for a timed operator.
pub trait TimerService {
    /// Asks for `on_timer` to be called for `key` once `domain`'s time reaches `timestamp`.
    /// Registering the same key, time and domain again is one timer. Fails for a key outside
    /// the key groups this subtask owns.
    fn register(&self, key: &[u8], timestamp: i64, domain: TimeDomain) -> Result<(), String>;
    /// Removes that timer, if it is pending.
    fn delete(&self, key: &[u8], timestamp: i64, domain: TimeDomain);
    /// The subtask's event-time watermark: no record with an earlier timestamp is expected any
    /// more. [`NO_WATERMARK`] before the first.
    fn watermark(&self) -> i64;
}

thread_local! {
    /// The subtask's timer service: one component instance is one subtask.
    static SERVICE: RefCell<Option<Rc<dyn TimerService>>> = const { RefCell::new(None) };
}

/// Makes `service` this subtask's timer service, the one [`timers()`] reaches: what a test does
/// with a [`ManualTimers`] before it drives a timed operator natively (a component's is the
/// host's, installed by its `init`).
pub fn install<S: TimerService + 'static>(service: Rc<S>) {
    SERVICE.set(Some(service));
}

/// This subtask's timers.
pub fn timers() -> Timers {
    Timers(())
}

/// This subtask's timers, as [`timers()`] returns them: the host's in a component exported with
/// `export_timed_operator!`, the [`install`]ed ones natively; none otherwise (registering
/// fails, saying so, and the watermark is [`NO_WATERMARK`]).
#[derive(Debug, Clone, Copy)]
pub struct Timers(());

fn installed() -> Option<Rc<dyn TimerService>> {
    SERVICE.with_borrow(Clone::clone)
}

impl TimerService for Timers {
    fn register(&self, key: &[u8], timestamp: i64, domain: TimeDomain) -> Result<(), String> {
        match installed() {
            Some(service) => service.register(key, timestamp, domain),
            None => Err("this operator has no timers: export it with \
                         `export_timed_operator!` (or, natively, `time::install` some)"
                .to_owned()),
        }
    }

    fn delete(&self, key: &[u8], timestamp: i64, domain: TimeDomain) {
        if let Some(service) = installed() {
            service.delete(key, timestamp, domain);
        }
    }

    fn watermark(&self) -> i64 {
        installed().map_or(NO_WATERMARK, |service| service.watermark())
    }
}

/// The host's timer service, through the `timers` import of the `timed-operator` world.
#[derive(Debug)]
pub(crate) struct HostTimers;

impl TimerService for HostTimers {
    fn register(&self, key: &[u8], timestamp: i64, domain: TimeDomain) -> Result<(), String> {
        crate::bindings::timed_operator::jobhost::operator::timers::register(key, timestamp, domain)
    }

    fn delete(&self, key: &[u8], timestamp: i64, domain: TimeDomain) {
        crate::bindings::timed_operator::jobhost::operator::timers::delete(key, timestamp, domain);
    }

    fn watermark(&self) -> i64 {
        crate::bindings::timed_operator::jobhost::operator::timers::current_watermark()
    }
}

mod manual;
