//! A subtask's side of event time: the watermarks it sends on, as its source's generator or
//! its inputs' valve decides ([`crate::time::watermarks`]).

use super::{Subtask, SubtaskError};
use crate::time::watermarks::Signal;

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

    /// The subtask's watermark advanced, or it turned idle or active: the watermark goes on.
    pub(super) async fn on_time(&mut self, signal: Signal) -> Result<(), SubtaskError> {
        self.send_time(signal)
    }
}
