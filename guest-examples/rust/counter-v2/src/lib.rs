//! A keyed running count of words that also remembers when each word was first seen (version
//! 2.0.0 of `word-counter`).
//!
//! For each input record, whose key is a word, it adds one to the word's count and emits the
//! word as key, `"{word} {count} first-seen={timestamp}"` as value, and the input's timestamp.
//! `first-seen` is the timestamp of the word's first occurrence, or `unknown` for a word that
//! was first counted by version 1, whose state it migrates. Its keyed state is format
//! `word-count` version 2: `[count, first_seen or nil]` per word; it reads versions 1 and 2.

use jobhost_guest::{
    BatchBuilder, Context, Keyed, ModuleInfo, OldEntries, Operator, Records, StateFormat,
};

/// What is known about one word: how many times, and since when (`None`: counted by v1).
pub type Word = (u64, Option<i64>);

/// The counter; its state is all keyed, kept by the SDK.
pub struct Counter;

impl Operator for Counter {
    type Value = Word;
    const STATE: StateFormat = StateFormat {
        name: "word-count",
        version: 2,
    };

    fn describe() -> ModuleInfo {
        jobhost_guest::module("word-counter", "2.0.0")
    }

    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(Counter)
    }

    fn process(
        &mut self,
        input: Records<'_>,
        keyed: &mut Keyed<Word>,
        output: &mut BatchBuilder,
    ) -> Result<(), String> {
        for r in input {
            let word = keyed.or_insert_with(&r, || (0, Some(r.timestamp)));
            word.0 += 1;
            let (count, first_seen) = *word;
            output.push_with(r.key, r.timestamp, |value| {
                value.extend_from_slice(r.key);
                value.push(b' ');
                value.extend_from_slice(itoa::Buffer::new().format(count).as_bytes());
                value.extend_from_slice(b" first-seen=");
                match first_seen {
                    Some(t) => value.extend_from_slice(itoa::Buffer::new().format(t).as_bytes()),
                    None => value.extend_from_slice(b"unknown"),
                }
            })?;
        }
        Ok(())
    }

    /// Version 1 kept a count per word; when it was first seen is unknown.
    fn migrate(version: u32, old: OldEntries<'_, Word>) -> Result<(), String> {
        match version {
            1 => old.convert(|_word, count: u64| (count, None)),
            _ => Err(jobhost_guest::envelope::unsupported(Self::STATE, version)),
        }
    }
}

jobhost_guest::export_operator!(Counter);

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::bindings::types::KeyGroupState;
    use jobhost_guest::{Batch, Restored, StateOrigin, glue, records};

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

    /// What `word-counter` 1.0.0 writes for key group 7 after counting "a" three times, as
    /// `counter-v1`'s own test checks: `["word-count", 1, [[bin "a", 3]]]`.
    fn v1_group() -> Vec<u8> {
        let mut blob = vec![0x93, 0xaa];
        blob.extend_from_slice(b"word-count");
        blob.extend_from_slice(&[0x01, 0x91, 0x92, 0xc4, 0x01, b'a', 0x03]);
        blob
    }

    fn restore(key_groups: Vec<KeyGroupState>) -> Result<(), String> {
        let origin = StateOrigin {
            module_name: "word-counter".to_owned(),
            module_version: "1.0.0".to_owned(),
            module_sha256: String::new(),
        };
        let restored = Restored {
            parallelism: 1,
            operator_states: vec![vec![]],
            key_groups,
        };
        glue::operator_restore::<Counter>(restored, origin)
    }

    fn count(words: &[(&str, u32, i64)]) -> Vec<String> {
        let mut input = BatchBuilder::new();
        for (word, _, timestamp) in words {
            input.push(word.as_bytes(), b"", *timestamp).unwrap();
        }
        let mut input: Batch = input.into();
        input.key_groups = words.iter().map(|(_, group, _)| *group).collect();
        let output = glue::operator_process::<Counter>(input).unwrap();
        let values = records(&output).unwrap().map(|r| r.value.to_vec());
        values.map(|v| String::from_utf8(v).unwrap()).collect()
    }

    #[test]
    fn migrates_version_1_and_counts_on() {
        glue::operator_init::<Counter>(context()).unwrap();
        restore(vec![KeyGroupState {
            delta: false,
            key_group: 7,
            state: v1_group(),
        }])
        .unwrap();
        let output = count(&[("a", 7, 10), ("c", 8, 11), ("c", 8, 12)]);
        assert_eq!(
            output,
            [
                "a 4 first-seen=unknown",
                "c 1 first-seen=11",
                "c 2 first-seen=11"
            ]
        );
        // Written back as version 2: ["word-count", 2, [[bin "a", [4, nil]]]].
        let snapshot = glue::operator_snapshot::<Counter>(1, true).unwrap();
        let mut expected = vec![0x93, 0xaa];
        expected.extend_from_slice(b"word-count");
        expected.extend_from_slice(&[0x02, 0x91, 0x92, 0xc4, 0x01, b'a', 0x92, 0x04, 0xc0]);
        assert_eq!(snapshot.key_groups[0].key_group, 7);
        assert_eq!(snapshot.key_groups[0].state, expected);
    }

    #[test]
    fn refuses_newer_versions_and_other_formats() {
        glue::operator_init::<Counter>(context()).unwrap();
        let mut v3 = v1_group();
        v3[12] = 0x03;
        let error = restore(vec![KeyGroupState {
            delta: false,
            key_group: 7,
            state: v3,
        }])
        .unwrap_err();
        assert_eq!(
            error,
            "state `word-count` version 3 is not one this module reads (it writes version 2)"
        );
        let mut other = v1_group();
        other[2] = b'W';
        let error = restore(vec![KeyGroupState {
            delta: false,
            key_group: 7,
            state: other,
        }])
        .unwrap_err();
        assert!(error.contains("format `Word-count`"), "{error}");
    }
}
