//! A windowed count and sum per key: tumbling windows of 10 s of event time (version 2.0.0 of
//! `window-count`), which resumes version 1's open windows.
//!
//! As version 1, and it also sums the records' values read as integers (an empty value adds 0):
//! for each window it emits the value `"{key} {start} {end} count={n} sum={sum}"` at timestamp
//! `end - 1`, `sum=unknown` for a window that version 1 opened (it did not sum). Config
//! `allowed_lateness_ms` and `late_output` as version 1. Its state is format `window-count` version 2: each
//! window's accumulator is `[count, sum or nil]`; it reads versions 1 and 2.

use jobhost_guest::aggregate::{self, Count, Sum};
use jobhost_guest::window::OldWindows;
use jobhost_guest::{
    BatchBuilder, Context, ModuleInfo, Record, StateFormat, Window, WindowOperator, Windows,
    config_or,
};

/// The operator: its windows and accumulators are kept by the SDK.
pub struct WindowCount;

/// What it computes: the count, and the sum of the values (`None`: unknown).
type CountAndSum = (Count, Sum<fn(&Record<'_>) -> Result<i64, String>>);

/// A value as an integer, 0 if empty.
fn integer_or_zero(record: &Record<'_>) -> Result<i64, String> {
    match record.value {
        b"" => Ok(0),
        _ => aggregate::value_as_integer(record),
    }
}

impl WindowOperator for WindowCount {
    type Aggregate = CountAndSum;
    const STATE: StateFormat = StateFormat {
        name: "window-count",
        version: 2,
    };

    fn describe() -> ModuleInfo {
        jobhost_guest::module("window-count", "2.0.0")
    }

    fn windows(ctx: &Context) -> Result<Windows<CountAndSum>, String> {
        let lateness = config_or(&ctx.config, "allowed_lateness_ms", 0)?;
        let mut windows = Windows::tumbling(10_000).allowed_lateness(lateness);
        if config_or(&ctx.config, "late_output", false)? {
            windows = windows.late_output();
        }
        let by: fn(&Record<'_>) -> Result<i64, String> = integer_or_zero;
        Ok(windows.aggregate((aggregate::count(), aggregate::sum_by(by))))
    }

    fn emit(
        key: &[u8],
        w: Window,
        (count, sum): &(u64, Option<i64>),
        output: &mut BatchBuilder,
    ) -> Result<(), String> {
        output.push_with(key, w.max_timestamp(), |value| {
            let mut number = itoa::Buffer::new();
            value.extend_from_slice(key);
            for (field, n) in [(" ", w.start), (" ", w.end)] {
                value.extend_from_slice(field.as_bytes());
                value.extend_from_slice(number.format(n).as_bytes());
            }
            value.extend_from_slice(b" count=");
            value.extend_from_slice(number.format(*count).as_bytes());
            value.extend_from_slice(b" sum=");
            match sum {
                Some(sum) => value.extend_from_slice(number.format(*sum).as_bytes()),
                None => value.extend_from_slice(b"unknown"),
            }
        })
    }

    /// Version 1 kept a count per window; its sum is unknown.
    fn migrate(version: u32, old: OldWindows<'_, CountAndSum>) -> Result<(), String> {
        match version {
            1 => old.convert(|count: u64| (count, None)),
            _ => Err(jobhost_guest::envelope::unsupported(Self::STATE, version)),
        }
    }
}

jobhost_guest::export_window_operator!(WindowCount);

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::bindings::types::KeyGroupState;
    use jobhost_guest::time::{self, ManualTimers};
    use jobhost_guest::window::Windowed;
    use jobhost_guest::{Batch, Restored, StateOrigin, TimeDomain, TimerService, glue, records};

    type Op = Windowed<WindowCount>;

    fn context() -> Context {
        Context {
            operator_id: "windows".to_owned(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            key_group_start: 0,
            key_group_end: 128,
            config: vec![],
        }
    }

    /// What `window-count` 1.0.0 writes for key group 7 after `a` at 1000 and 2000, as
    /// `window-count-v1`'s own test checks: `["window-count", 1, [[bin "a", [[0, 10000, 2,
    /// false]]]]]`.
    fn v1_group() -> Vec<u8> {
        let mut blob = vec![0x93, 0xac];
        blob.extend_from_slice(b"window-count");
        blob.extend_from_slice(&[0x01, 0x91, 0x92, 0xc4, 0x01, b'a', 0x91, 0x94]);
        blob.extend_from_slice(&[0x00, 0xcd, 0x27, 0x10, 0x02, 0xc2]);
        blob
    }

    fn restore(state: Vec<u8>) -> Result<(), String> {
        let origin = StateOrigin {
            module_name: "window-count".to_owned(),
            module_version: "1.0.0".to_owned(),
            module_sha256: String::new(),
        };
        let key_groups = vec![KeyGroupState {
            key_group: 7,
            delta: false,
            state,
        }];
        let restored = Restored {
            parallelism: 1,
            operator_states: vec![vec![]],
            key_groups,
        };
        glue::operator_restore::<Op>(restored, origin)
    }

    fn values(batch: &Batch) -> Vec<String> {
        let read = records(batch).unwrap();
        read.map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn resumes_version_1_open_windows_and_sums_from_then_on() {
        // The host keeps the timer v1 registered for its window across the upgrade.
        let timers = ManualTimers::new(|_| 7);
        timers.register(b"a", 9_999, TimeDomain::EventTime).unwrap();
        time::install(timers.clone());
        glue::timed_operator_init::<Op>(context()).unwrap();
        restore(v1_group()).unwrap();
        let mut input = BatchBuilder::new();
        for (key, value, timestamp) in [("a", "5", 3_000), ("a", "7", 13_000), ("b", "", 4_000)] {
            input
                .push(key.as_bytes(), value.as_bytes(), timestamp)
                .unwrap();
        }
        let mut input: Batch = input.into();
        input.key_groups = vec![7, 7, 7];
        assert!(values(&glue::operator_process::<Op>(input).unwrap()).is_empty());
        let fired = timers.advance_watermark(20_000);
        let fired = glue::operator_on_timer::<Op>(TimeDomain::EventTime, fired).unwrap();
        assert_eq!(
            values(&fired),
            [
                "a 0 10000 count=3 sum=unknown",
                "b 0 10000 count=1 sum=0",
                "a 10000 20000 count=1 sum=7"
            ]
        );
    }

    #[test]
    fn refuses_newer_versions_and_other_formats() {
        time::install(ManualTimers::new(|_| 7));
        glue::timed_operator_init::<Op>(context()).unwrap();
        let mut v3 = v1_group();
        v3[14] = 0x03;
        assert_eq!(
            restore(v3).unwrap_err(),
            "state `window-count` version 3 is not one this module reads (it writes version 2)"
        );
        let mut other = v1_group();
        other[2] = b'W';
        let error = restore(other).unwrap_err();
        assert!(error.contains("format `Window-count`"), "{error}");
    }
}
