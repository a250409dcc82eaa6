//! A keyed running count of words (version 1.0.0 of `word-counter`).
//!
//! For each input record, whose key is a word, it adds one to the word's count and emits the
//! word as key, `"{word} {count}"` as value, and the input's timestamp. Its keyed state, format
//! `word-count` version 1 (`docs/state-format.md`), is each word's count: the SDK keeps it by
//! key group, so it rescales, and Python and JavaScript counters read it.

use jobhost_guest::{BatchBuilder, Context, Keyed, ModuleInfo, Operator, Records, StateFormat};

/// The counter; its state is all keyed, kept by the SDK.
pub struct Counter;

/// The format of its keyed state.
pub const WORD_COUNT_V1: StateFormat = StateFormat {
    name: "word-count",
    version: 1,
};

impl Operator for Counter {
    type Value = u64;
    const STATE: StateFormat = WORD_COUNT_V1;

    fn describe() -> ModuleInfo {
        jobhost_guest::module("word-counter", "1.0.0")
    }

    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(Counter)
    }

    fn process(
        &mut self,
        input: Records<'_>,
        keyed: &mut Keyed<u64>,
        output: &mut BatchBuilder,
    ) -> Result<(), String> {
        for r in input {
            let count = keyed.or_default(&r);
            *count += 1;
            let count = *count;
            // `word count`, written in place: no allocation per record.
            output.push_with(r.key, r.timestamp, |value| {
                value.extend_from_slice(r.key);
                value.push(b' ');
                value.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
            })?;
        }
        Ok(())
    }
}

jobhost_guest::export_operator!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::{Batch, Context, glue, records};

    fn context() -> Context {
        Context {
            operator_id: "counter".to_owned(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            key_group_start: 0,
            key_group_end: 128,
            config: vec![],
        }
    }

    #[test]
    fn counts_words_and_writes_word_count_version_1() {
        glue::operator_init::<Counter>(context()).unwrap();
        let mut input = BatchBuilder::new();
        for (word, timestamp) in [("a", 1), ("b", 2), ("a", 3), ("a", 4)] {
            input
                .push(word.as_bytes(), word.as_bytes(), timestamp)
                .unwrap();
        }
        let mut input: Batch = input.into();
        input.key_groups = vec![7, 9, 7, 7];
        let output = glue::operator_process::<Counter>(input).unwrap();
        let output: Vec<_> = records(&output)
            .unwrap()
            .map(|r| (r.key, r.value, r.timestamp))
            .collect();
        let expected: [(&[u8], &[u8], i64); 4] = [
            (b"a", b"a 1", 1),
            (b"b", b"b 1", 2),
            (b"a", b"a 2", 3),
            (b"a", b"a 3", 4),
        ];
        assert_eq!(output, expected);

        // The key group that counter-v2's migration test (and the Python and JavaScript
        // counters') reads: ["word-count", 1, [[bin "a", 3]]].
        let snapshot = glue::operator_snapshot::<Counter>(1, false).unwrap();
        let groups: Vec<_> = snapshot.key_groups.iter().map(|g| g.key_group).collect();
        assert_eq!(groups, [7, 9]);
        let mut expected = vec![0x93, 0xaa];
        expected.extend_from_slice(b"word-count");
        expected.extend_from_slice(&[0x01, 0x91, 0x92, 0xc4, 0x01, b'a', 0x03]);
        assert_eq!(snapshot.key_groups[0].state, expected);
        assert!(
            glue::operator_snapshot::<Counter>(2, false)
                .unwrap()
                .key_groups
                .is_empty()
        );
    }

    #[test]
    fn refuses_records_without_key_groups() {
        glue::operator_init::<Counter>(context()).unwrap();
        let mut input = BatchBuilder::new();
        input.push(b"a", b"a", 1).unwrap();
        let error = glue::operator_process::<Counter>(input.into()).unwrap_err();
        assert!(
            error.contains("does not come over a key-by edge"),
            "{error}"
        );
    }
}
