//! A subtask's side of event time: the watermarks it sends on, as its source's generator or
//! its inputs' valve decides ([`crate::time::watermarks`]), and its timers
//! ([`crate::time::timers`]): what its guest registered during a call, carried out after it;
//! event-time timers fired when the watermark passes them, before the watermark goes on;
//! processing-time timers fired by the wall clock. Firing is one `on-timer` call per batch of
//! due timers, whose output goes downstream as `process`'s does.

use jobhost_batch::BatchBuilder;
use tokio::time::Instant;

use super::{Subtask, SubtaskError};
use crate::engine::TimerRequest;
use crate::engine::bindings::Batch;
use crate::runtime::partition::into_batch;
use crate::time::Domain;
use crate::time::timers::{TIMER_KEY_BYTES_MAX, TIMERS_PENDING_MAX};
use crate::time::watermarks::Signal;

/// Most timers fired in one `on-timer` call.
pub const TIMERS_FIRED_PER_CALL_MAX: usize = 1_024;

/// Milliseconds since the Unix epoch now: processing time.
pub fn processing_time() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    since.map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Subtask {
    /// Sends the subtask's watermark (or its idleness) to every downstream subtask, behind the
    /// records sent before it, and counts it.
    pub(super) fn send_time(&self, signal: Signal) -> Result<(), SubtaskError> {
        if let Signal::Watermark(watermark) = signal {
            self.counters.watermark(watermark);
        }
        self.output.time(signal)?;
        Ok(())
    }

    /// A source's poll returned `batch`: it goes downstream, then the watermark, if the
    /// records (or the guest) advanced it; or idleness, after long enough without records.
    pub(super) async fn on_polled(&mut self, batch: Batch) -> Result<(), SubtaskError> {
        let now = std::time::Instant::now();
        self.generator.polled(&batch.timestamps, now);
        if let Some(declared) = self.instance.take_declared_watermark() {
            self.generator.declared(declared, now);
        }
        self.output.send(batch).await?;
        match self.generator.next(now) {
            Some(signal) => self.send_time(signal),
            None => Ok(()),
        }
    }

    /// The subtask's watermark advanced, or it turned idle or active: the event-time timers it
    /// passed fire, then the watermark goes on.
    pub(super) async fn on_time(&mut self, signal: Signal) -> Result<(), SubtaskError> {
        if let Signal::Watermark(watermark) = signal {
            self.fire(Domain::Event, watermark).await?;
        }
        self.send_time(signal)
    }

    /// The processing-time timers due now fire.
    pub(super) async fn fire_processing_timers(&mut self) -> Result<(), SubtaskError> {
        self.fire(Domain::Processing, processing_time()).await
    }

    /// When the earliest processing-time timer is due, on tokio's clock; none without one.
    pub(super) fn processing_timers_due(&self) -> Option<Instant> {
        let due = self.timers.next(Domain::Processing)?;
        let wait = due.saturating_sub(processing_time()).max(0);
        Some(Instant::now() + std::time::Duration::from_millis(wait as u64))
    }

    /// Opens the guest's `timers` import for its next call, at the subtask's watermark.
    pub(super) fn open_timers(&mut self) {
        if self.instance.keeps_timers() {
            let timers = TIMERS_PENDING_MAX.saturating_sub(self.timers.pending());
            let key_bytes = TIMER_KEY_BYTES_MAX.saturating_sub(self.timers.key_bytes());
            let watermark = self.valve.watermark();
            self.instance.open_timers(watermark, timers, key_bytes);
        }
    }

    /// Carries out, in order, what the guest asked of its timers during the call just made.
    pub(super) fn close_timers(&mut self) {
        if !self.instance.keeps_timers() {
            return;
        }
        for request in self.instance.close_timers() {
            match request {
                TimerRequest::Register(group, timer) => drop(self.timers.register(group, timer)),
                TimerRequest::Delete(group, timer) => drop(self.timers.delete(group, &timer)),
            }
        }
        self.counters.timers_pending(self.timers.pending());
    }

    /// Fires the timers of `domain` due at `now`, pending when it starts (a timer registered
    /// meanwhile at or below `now` fires at the next advance), in batches of at most
    /// [`TIMERS_FIRED_PER_CALL_MAX`]: one `on-timer` call each, its output sent downstream. A
    /// timer the guest deleted before its batch came does not fire.
    async fn fire(&mut self, domain: Domain, now: i64) -> Result<(), SubtaskError> {
        if !self.instance.keeps_timers() {
            return Ok(());
        }
        let due = self.timers.due(domain, now);
        for chunk in due.chunks(TIMERS_FIRED_PER_CALL_MAX) {
            let (mut fired, mut groups) = (BatchBuilder::new(), Vec::with_capacity(chunk.len()));
            for (group, timer) in chunk {
                if self.timers.delete(*group, timer) {
                    // Keys of pending timers are far below 4 GiB (`TIMER_KEY_BYTES_MAX`).
                    let pushed = fired.push(&timer.key, b"", timer.timestamp);
                    pushed.expect("a batch of timers fits its offsets");
                    groups.push(*group);
                }
            }
            if groups.is_empty() {
                continue;
            }
            let fired = into_batch(fired.finish(), groups);
            self.open_timers();
            let since = std::time::Instant::now();
            let output = self.instance.on_timer(domain, &fired).await;
            self.counters.busy_since(since);
            self.close_timers();
            let output = output?;
            self.check(&output)?;
            self.output.send(output).await?;
        }
        Ok(())
    }
}
