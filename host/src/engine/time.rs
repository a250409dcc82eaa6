//! The host's side of the `timers` and `source-time` imports: what a guest asks of time
//! during a call, recorded in its store for the subtask to carry out after the call.
//!
//! Every instance is linked with both imports (a component that does not import them is not
//! affected). A `timed-operator` registers and deletes timers from `process` and `on-timer`:
//! each request is checked at once (the key's group must be one the subtask owns, the limits
//! must hold), and queued in order; the subtask applies the queue to its timer service
//! ([`crate::time::timers`]) when the call returns. `current-watermark` answers with the
//! subtask's watermark as of the call. A `timed-source` declares watermarks from `poll-batch`:
//! the greatest one is kept for the subtask to take.

use std::ops::Range;

use bytes::Bytes;

use super::HostState;
use super::bindings::TimeDomain;
use super::bindings::timed_operator::jobhost::operator::timers;
use super::bindings::timed_source::jobhost::operator::source_time;
use crate::key_group::key_group;
use crate::time::timers::Timer;
use crate::time::{Domain, WATERMARK_MIN};

/// What a guest asked of its timers, in the order it asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TimerRequest {
    /// Register the timer, whose key is in this key group.
    Register(u32, Timer),
    /// Delete the timer, whose key is in this key group.
    Delete(u32, Timer),
}

/// Where a call may register timers: the subtask's key groups, and what the limits leave.
#[derive(Clone, Debug)]
pub struct TimerRoom {
    /// The key groups the subtask owns.
    pub key_groups: Range<u32>,
    /// The number of key groups.
    pub max_parallelism: u32,
    /// Timers the subtask may still add.
    pub timers: u64,
    /// Bytes of keys its timers may still add.
    pub key_bytes: u64,
}

/// What an instance's guest sees of time, and what it asked of it during a call.
#[derive(Debug)]
pub struct GuestTime {
    /// The subtask's watermark, as `current-watermark` returns it.
    watermark: i64,
    /// Whether the guest may read the real clocks (processing-time timers need them).
    clock: bool,
    /// Set during `process` and `on-timer`: timers may be registered then only.
    room: Option<TimerRoom>,
    /// What it asked of its timers during the call.
    requests: Vec<TimerRequest>,
    /// The greatest watermark a source's guest declared, not yet taken.
    declared: Option<i64>,
}

impl GuestTime {
    /// Time as a guest with (or without) the clock grant first sees it.
    pub(super) fn new(clock: bool) -> Self {
        GuestTime {
            watermark: WATERMARK_MIN,
            clock,
            room: None,
            requests: Vec::new(),
            declared: None,
        }
    }

    /// Opens the timers for one call, at the subtask's `watermark`, within `room`.
    pub(super) fn open(&mut self, watermark: i64, room: TimerRoom) {
        self.watermark = watermark;
        self.room = Some(room);
        self.requests.clear();
    }

    /// Closes the timers after the call: what the guest asked, in order.
    pub(super) fn close(&mut self) -> Vec<TimerRequest> {
        self.room = None;
        std::mem::take(&mut self.requests)
    }

    /// The greatest watermark a source's guest declared since this was last asked.
    pub(super) fn take_declared(&mut self) -> Option<i64> {
        self.declared.take()
    }

    fn register(&mut self, key: Vec<u8>, timestamp: i64, domain: Domain) -> Result<(), String> {
        let Some(room) = &mut self.room else {
            return Err("timers can be registered only from `process` and `on-timer`".to_owned());
        };
        if domain == Domain::Processing && !self.clock {
            return Err(
                "processing-time timers follow the wall clock, which this operator \
                        may not read: grant it with `clock = true` in the job file"
                    .to_owned(),
            );
        }
        let group = key_group(&key, room.max_parallelism);
        if !room.key_groups.contains(&group) {
            return Err(format!(
                "the key is in key group {group}, outside the groups {}..{} this subtask owns: \
                 register timers only for the keys of the records it received",
                room.key_groups.start, room.key_groups.end
            ));
        }
        let bytes = key.len() as u64;
        if room.timers == 0 || room.key_bytes < bytes {
            return Err(format!(
                "too many timers pending: at most {} per subtask, with at most {} bytes of keys",
                crate::time::timers::TIMERS_PENDING_MAX,
                crate::time::timers::TIMER_KEY_BYTES_MAX
            ));
        }
        room.timers -= 1;
        room.key_bytes -= bytes;
        let timer = Timer {
            domain,
            timestamp,
            key: Bytes::from(key),
        };
        self.requests.push(TimerRequest::Register(group, timer));
        Ok(())
    }

    fn delete(&mut self, key: Vec<u8>, timestamp: i64, domain: Domain) {
        let Some(room) = &self.room else {
            return;
        };
        let group = key_group(&key, room.max_parallelism);
        if room.key_groups.contains(&group) {
            let key = Bytes::from(key);
            let timer = Timer {
                domain,
                timestamp,
                key,
            };
            self.requests.push(TimerRequest::Delete(group, timer));
        }
    }
}

/// The WIT's clock, as the host names it.
pub fn domain(domain: TimeDomain) -> Domain {
    match domain {
        TimeDomain::EventTime => Domain::Event,
        TimeDomain::ProcessingTime => Domain::Processing,
    }
}

/// The host's clock, as the WIT names it.
pub fn time_domain(domain: Domain) -> TimeDomain {
    match domain {
        Domain::Event => TimeDomain::EventTime,
        Domain::Processing => TimeDomain::ProcessingTime,
    }
}

impl timers::Host for HostState {
    fn register(
        &mut self,
        key: Vec<u8>,
        timestamp: i64,
        time_domain: TimeDomain,
    ) -> Result<(), String> {
        self.time.register(key, timestamp, domain(time_domain))
    }

    fn delete(&mut self, key: Vec<u8>, timestamp: i64, time_domain: TimeDomain) {
        self.time.delete(key, timestamp, domain(time_domain));
    }

    fn current_watermark(&mut self) -> i64 {
        self.time.watermark
    }
}

impl source_time::Host for HostState {
    fn emit_watermark(&mut self, watermark: i64) {
        let declared = self.time.declared.get_or_insert(watermark);
        *declared = (*declared).max(watermark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(key_groups: Range<u32>) -> TimerRoom {
        TimerRoom {
            key_groups,
            max_parallelism: 128,
            timers: 2,
            key_bytes: 64,
        }
    }

    #[test]
    fn timers_are_registered_during_calls_only_for_owned_keys_within_the_limits() {
        let mut time = GuestTime::new(false);
        let outside = time.register(b"apple".to_vec(), 5, Domain::Event);
        assert!(
            outside
                .unwrap_err()
                .contains("only from `process` and `on-timer`")
        );
        // `apple` is in key group 0 of 128, `the` in 125.
        time.open(42, room(0..64));
        time.register(b"apple".to_vec(), 5, Domain::Event).unwrap();
        let foreign = time
            .register(b"the".to_vec(), 5, Domain::Event)
            .unwrap_err();
        assert!(
            foreign.contains("key group 125, outside the groups 0..64"),
            "{foreign}"
        );
        let clockless = time.register(b"apple".to_vec(), 9, Domain::Processing);
        assert!(clockless.unwrap_err().contains("clock = true"));
        time.delete(b"apple".to_vec(), 5, Domain::Event);
        time.delete(b"the".to_vec(), 5, Domain::Event);
        time.register(b"apple".to_vec(), 6, Domain::Event).unwrap();
        let full = time
            .register(b"apple".to_vec(), 7, Domain::Event)
            .unwrap_err();
        assert!(full.contains("too many timers pending"), "{full}");
        let requests = time.close();
        let timer = |timestamp| Timer {
            domain: Domain::Event,
            timestamp,
            key: Bytes::from_static(b"apple"),
        };
        assert_eq!(
            requests,
            [
                TimerRequest::Register(0, timer(5)),
                TimerRequest::Delete(0, timer(5)),
                TimerRequest::Register(0, timer(6)),
            ]
        );
        assert!(time.close().is_empty());
    }
}
