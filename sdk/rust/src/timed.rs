//! An operator that uses time: [`TimedOperator`], exported by [`export_timed_operator!`] as
//! the `timed-operator` world (a `live-operator` that imports the host's `timers` and exports
//! `on-timer`).

use crate::{BatchBuilder, Keyed, Operator, Records, TimeDomain};

/// An [`Operator`] that registers timers ([`timers()`](crate::timers), from `process` or
/// `on_timer`) and is called back when they fire; export it with
/// [`export_timed_operator!`](crate::export_timed_operator).
pub trait TimedOperator: Operator {
    /// Timers of `domain` that fired: each record of `fired` is one timer, its key and
    /// timestamp (values are empty), in timestamp order. Pushes records downstream onto
    /// `output`, as `process` does, and may register and delete timers. Event-time timers fire
    /// as the watermark passes them; processing-time timers by the wall clock (overdue ones at
    /// once after a restore).
    fn on_timer(
        &mut self,
        domain: TimeDomain,
        fired: Records<'_>,
        keyed: &mut Keyed<Self::Value>,
        output: &mut BatchBuilder,
    ) -> Result<(), String>;
}

/// Exports `$t`, a [`TimedOperator`], as the component's `timed-operator` world (the
/// `live-operator` world, the host's `timers` imported, and `on-timer`).
#[macro_export]
macro_rules! export_timed_operator {
    ($t:ty) => {
        $crate::__export_operator_world!(
            $t,
            __JobhostTimedOperator,
            timed_operator,
            export_timed_operator_world,
            timed_operator_init,
            {
                fn on_timer(
                    domain: $crate::TimeDomain,
                    fired: $crate::Batch,
                ) -> Result<$crate::Batch, String> {
                    $crate::glue::operator_on_timer::<$t>(domain, fired)
                }
            }
        );
    };
}
