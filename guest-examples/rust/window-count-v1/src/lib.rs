//! A windowed count per key: tumbling windows of 10 s of event time (version 1.0.0 of
//! `window-count`).
//!
//! For each key, it counts the records of each window `[start, start + 10000)` of their
//! timestamps and, once the watermark reaches the window's end, emits one record: the key, the
//! value `"{key} {start} {end} count={n}"`, at timestamp `end - 1`. Config
//! `allowed_lateness_ms` (default 0) keeps a window that long after its end: a record of it
//! that arrives meanwhile updates it, and it is emitted again; config `late_output = "true"`
//! sends a record too late for its window on downstream (key prefixed `\xfflate:`, its value
//! and timestamp) rather than only counting it. Its state, format
//! `window-count` version 1 (`docs/state-format.md`, *Windows*), is each key's open windows
//! with their counts; the Python and JavaScript versions write the same bytes.

use jobhost_guest::aggregate::{self, Count};
use jobhost_guest::{
    BatchBuilder, Context, ModuleInfo, StateFormat, Window, WindowOperator, Windows, config_or,
};

/// The operator: its windows and counts are kept by the SDK.
pub struct WindowCount;

/// The format of its state.
pub const WINDOW_COUNT_V1: StateFormat = StateFormat {
    name: "window-count",
    version: 1,
};

impl WindowOperator for WindowCount {
    type Aggregate = Count;
    const STATE: StateFormat = WINDOW_COUNT_V1;

    fn describe() -> ModuleInfo {
        jobhost_guest::module("window-count", "1.0.0")
    }

    fn windows(ctx: &Context) -> Result<Windows<Count>, String> {
        let lateness = config_or(&ctx.config, "allowed_lateness_ms", 0)?;
        let mut windows = Windows::tumbling(10_000).allowed_lateness(lateness);
        if config_or(&ctx.config, "late_output", false)? {
            windows = windows.late_output();
        }
        Ok(windows.aggregate(aggregate::count()))
    }

    fn emit(key: &[u8], w: Window, count: &u64, output: &mut BatchBuilder) -> Result<(), String> {
        output.push_with(key, w.max_timestamp(), |value| {
            let mut number = itoa::Buffer::new();
            value.extend_from_slice(key);
            for (field, n) in [(" ", w.start), (" ", w.end)] {
                value.extend_from_slice(field.as_bytes());
                value.extend_from_slice(number.format(n).as_bytes());
            }
            value.extend_from_slice(b" count=");
            value.extend_from_slice(number.format(*count).as_bytes());
        })
    }
}

jobhost_guest::export_window_operator!(WindowCount);

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::time::{self, ManualTimers};
    use jobhost_guest::window::Windowed;
    use jobhost_guest::{Batch, TimeDomain, glue, records};

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

    fn values(batch: &Batch) -> Vec<String> {
        let read = records(batch).unwrap();
        read.map(|r| String::from_utf8(r.value.to_vec()).unwrap())
            .collect()
    }

    fn process(input: &[(&str, i64)]) -> Vec<String> {
        let mut batch = BatchBuilder::new();
        for (key, timestamp) in input {
            batch.push(key.as_bytes(), b"", *timestamp).unwrap();
        }
        let mut batch: Batch = batch.into();
        batch.key_groups = vec![7; input.len()];
        values(&glue::operator_process::<Op>(batch).unwrap())
    }

    #[test]
    fn counts_per_window_emits_at_the_watermark_and_writes_window_count_version_1() {
        let timers = ManualTimers::new(|_| 7);
        time::install(timers.clone());
        glue::timed_operator_init::<Op>(context()).unwrap();
        assert!(process(&[("a", 1_000), ("a", 2_000)]).is_empty());
        // The key group that window-count-v2's migration test (and the Python and JavaScript
        // versions') reads: ["window-count", 1, [[bin "a", [[0, 10000, 2, false]]]]].
        let snapshot = glue::operator_snapshot::<Op>(1, false).unwrap();
        let mut expected = vec![0x93, 0xac];
        expected.extend_from_slice(b"window-count");
        expected.extend_from_slice(&[0x01, 0x91, 0x92, 0xc4, 0x01, b'a', 0x91, 0x94]);
        expected.extend_from_slice(&[0x00, 0xcd, 0x27, 0x10, 0x02, 0xc2]);
        let groups: Vec<_> = snapshot.key_groups.iter().map(|g| g.key_group).collect();
        assert_eq!(groups, [7]);
        assert_eq!(snapshot.key_groups[0].state, expected);

        assert!(process(&[("a", 12_000)]).is_empty());
        let pending = timers.pending(TimeDomain::EventTime);
        assert_eq!(pending, [(b"a".to_vec(), 9_999), (b"a".to_vec(), 19_999)]);
        let fired = timers.advance_watermark(19_999);
        let fired = glue::operator_on_timer::<Op>(TimeDomain::EventTime, fired).unwrap();
        assert_eq!(
            values(&fired),
            ["a 0 10000 count=2", "a 10000 20000 count=1"]
        );
        // Without allowed lateness, a record of a window already emitted is late: dropped.
        assert!(process(&[("a", 19_000)]).is_empty());
        let snapshot = glue::operator_snapshot::<Op>(2, false).unwrap();
        assert_eq!(snapshot.key_groups[0].state, b"");
    }
}
