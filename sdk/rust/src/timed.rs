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
        #[doc(hidden)]
        pub struct __JobhostTimedOperator;
        impl $crate::bindings::timed_operator::Guest for __JobhostTimedOperator {
            fn describe() -> $crate::ModuleInfo {
                <$t as $crate::Operator>::describe()
            }
            fn init(ctx: $crate::Context) -> Result<(), String> {
                $crate::glue::timed_operator_init::<$t>(ctx)
            }
            fn snapshot(checkpoint: u64, full: bool) -> Result<$crate::Snapshot, String> {
                $crate::glue::operator_snapshot::<$t>(checkpoint, full)
            }
            fn restore(state: $crate::Restored, origin: $crate::StateOrigin) -> Result<(), String> {
                $crate::glue::operator_restore::<$t>(state, origin)
            }
            fn process(input: $crate::Batch) -> Result<$crate::Batch, String> {
                $crate::glue::operator_process::<$t>(input)
            }
            fn on_timer(
                domain: $crate::TimeDomain,
                fired: $crate::Batch,
            ) -> Result<$crate::Batch, String> {
                $crate::glue::operator_on_timer::<$t>(domain, fired)
            }
        }
        impl $crate::bindings::timed_operator::exports::jobhost::operator::catch_up::Guest
            for __JobhostTimedOperator
        {
            fn restore_changes(
                changes: $crate::Restored,
                origin: $crate::StateOrigin,
            ) -> Result<(), String> {
                $crate::glue::operator_restore_changes::<$t>(changes, origin)
            }
        }
        // Only a component exports it (see `export_operator!`).
        #[cfg(target_family = "wasm")]
        $crate::bindings::timed_operator::export_timed_operator_world!(
            __JobhostTimedOperator with_types_in $crate::bindings::timed_operator
        );
    };
}
