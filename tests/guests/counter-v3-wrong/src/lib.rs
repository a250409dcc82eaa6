//! A bad upgrade of the word counter (version 3.0.0 of `word-counter`): it reads and writes the
//! same state as version 1 (`word-count` version 1), so it restores from a v1 savepoint without
//! complaint, but it counts every word twice. The rollback test upgrades to it, then goes back
//! to the savepoint taken before the upgrade, with the program that wrote it.

use jobhost_guest::{BatchBuilder, Context, Keyed, ModuleInfo, Operator, Records, StateFormat};

/// The wrong counter; its state is all keyed, kept by the SDK.
pub struct Counter;

/// The format of its keyed state: version 1's.
pub const WORD_COUNT_V1: StateFormat = StateFormat {
    name: "word-count",
    version: 1,
};

impl Operator for Counter {
    type Value = u64;
    const STATE: StateFormat = WORD_COUNT_V1;

    fn describe() -> ModuleInfo {
        jobhost_guest::module("word-counter", "3.0.0")
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
            // The bug: two for one.
            *count += 2;
            let count = *count;
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
    use jobhost_guest::{Batch, glue, records};

    #[test]
    fn counts_every_word_twice() {
        let context = Context {
            operator_id: "counter".to_owned(),
            subtask: 0,
            parallelism: 1,
            max_parallelism: 128,
            key_group_start: 0,
            key_group_end: 128,
            config: vec![],
        };
        glue::operator_init::<Counter>(context).unwrap();
        let mut input = BatchBuilder::new();
        for word in ["a", "a"] {
            input.push(word.as_bytes(), word.as_bytes(), 1).unwrap();
        }
        let mut input: Batch = input.into();
        input.key_groups = vec![7, 7];
        let output = glue::operator_process::<Counter>(input).unwrap();
        let values: Vec<_> = records(&output)
            .unwrap()
            .map(|r| r.value.to_vec())
            .collect();
        assert_eq!(values, [b"a 2".to_vec(), b"a 4".to_vec()]);
    }
}
