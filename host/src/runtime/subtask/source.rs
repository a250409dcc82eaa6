//! A source subtask's loop: poll the guest (paced by its throttle), send the records on with
//! the watermark they advance, emit barriers when the coordinator triggers them.

use std::time::Duration;

use tokio::time::Instant;

use super::{Command, Event, IDLE_POLL_MS, POLL_RECORDS_MAX, Subtask, SubtaskError};
use crate::engine::bindings::PollResult;
use crate::runtime::channel::batch_len;
use crate::runtime::instance::CallError;

impl Subtask {
    pub(super) async fn run_source(mut self) -> Result<(), SubtaskError> {
        let mut exhausted = false;
        let mut throttle = Throttle::new(self.records_per_second_max);
        if let Some(resumed) = self.generator.resumed() {
            self.send_time(resumed)?;
        }
        loop {
            let wait = throttle.wait();
            let command = tokio::select! {
                biased;
                command = self.commands.recv() => Some(command),
                () = tokio::time::sleep_until(wait), if !exhausted => None,
            };
            match command {
                Some(Some(Command::Trigger(barrier))) => {
                    let _ = self.checkpoint(barrier, Duration::ZERO).await?;
                    self.output.barrier(barrier)?;
                    if barrier.then_stop {
                        self.output.end()?;
                        return Ok(());
                    }
                }
                Some(Some(Command::Commit(_) | Command::Swap(_))) => {
                    unreachable!("sources have nothing to commit, and are not swapped")
                }
                // The coordinator is gone: the job was cancelled.
                Some(None) => return Ok(()),
                None => match self.poll_within_bound(throttle.batch_records_max()).await? {
                    PollResult::Records(mut batch) => {
                        self.check(&batch)?;
                        if let Some(bound) = &self.bound {
                            bound.take(&self.id, &mut batch);
                        }
                        throttle.emitted(batch_len(&batch));
                        self.on_polled(batch).await?;
                    }
                    PollResult::End => {
                        exhausted = true;
                        let end = self.generator.end();
                        self.send_time(end)?;
                        let _ = self.events.send(Event::SourceExhausted);
                    }
                },
            }
        }
    }
}

impl Subtask {
    /// Polls for at most `records_max` records, fewer if the run's bound leaves fewer; past
    /// the bound, the end, without asking the guest.
    async fn poll_within_bound(&mut self, records_max: u32) -> Result<PollResult, CallError> {
        let left = self.bound.as_ref().and_then(|bound| bound.left(&self.id));
        match left {
            Some(0) => Ok(PollResult::End),
            Some(left) => {
                self.poll(records_max.min(left.try_into().unwrap_or(u32::MAX)))
                    .await
            }
            None => self.poll(records_max).await,
        }
    }
}

/// Paces a source to at most `records_per_second_max` records per second.
struct Throttle {
    rate: Option<u64>,
    started: Instant,
    emitted: u64,
    idle_until: Instant,
}

impl Throttle {
    fn new(rate: Option<u64>) -> Self {
        let now = Instant::now();
        Throttle {
            rate,
            started: now,
            emitted: 0,
            idle_until: now,
        }
    }

    /// Batches small enough that a throttled source emits about 20 per second.
    fn batch_records_max(&self) -> u32 {
        self.rate.map_or(POLL_RECORDS_MAX, |rate| {
            (rate / 20).clamp(1, u64::from(POLL_RECORDS_MAX)) as u32
        })
    }

    fn emitted(&mut self, records: usize) {
        self.emitted += records as u64;
        if records == 0 {
            self.idle_until = Instant::now() + Duration::from_millis(IDLE_POLL_MS);
        }
    }

    /// When the source may be polled next.
    fn wait(&self) -> Instant {
        let paced = self.rate.map_or(self.started, |rate| {
            self.started + Duration::from_secs_f64(self.emitted as f64 / rate as f64)
        });
        paced.max(self.idle_until)
    }
}
