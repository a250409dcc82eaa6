//! Event time: watermarks, which travel in band like barriers, and timers, which the host keeps
//! per key group as state.
//!
//! One watermark's journey: a source subtask's [`watermarks::Generator`] derives it from the
//! timestamps of the batches the source polls (the job file's bounded out-of-orderness), or
//! takes the one its guest declares (`emit-watermark`), and sends it on every edge behind the
//! records it covers. Downstream, a subtask's [`watermarks::Valve`] keeps the minimum over its
//! inputs (idle ones left out), never going back; when it advances, the subtask's
//! [`timers::TimerService`] fires the event-time timers it passed (`on-timer`), then the
//! watermark goes on. Processing-time timers fire by the wall clock. Timers are checkpointed
//! with the key group of their key, beside the guest's keyed state (see `docs/time.md`).
//! Decisions only: the runtime carries them out, and the clock is read by the caller.

pub mod timers;
pub mod watermarks;

/// A subtask's watermark before any: no record is known to be late yet.
pub const WATERMARK_MIN: i64 = i64::MIN;

/// The watermark that ends event time: a source that ran dry sends it, and every pending
/// event-time timer fires.
pub const WATERMARK_END: i64 = i64::MAX;

/// Which clock a timer follows (WIT `time-domain`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Domain {
    /// The subtask's watermark.
    Event,
    /// The wall clock, milliseconds since the Unix epoch.
    Processing,
}

impl Domain {
    /// Both domains, in their order.
    pub const ALL: [Domain; 2] = [Domain::Event, Domain::Processing];

    /// Its index into per-domain arrays.
    pub fn index(self) -> usize {
        match self {
            Domain::Event => 0,
            Domain::Processing => 1,
        }
    }
}

impl std::fmt::Display for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Domain::Event => "event-time",
            Domain::Processing => "processing-time",
        })
    }
}
