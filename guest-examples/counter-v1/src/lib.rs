//! A keyed running count of words (version 1.0.0 of `word-counter`).
//!
//! For each input record, whose key is a word, it adds one to the word's count and emits the
//! word as key, `"{word} {count}"` as value, and the input's timestamp. Its state, version 1,
//! maps each word to its count.

mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
    wit_bindgen::generate!({ world: "operator", path: "../../wit" });
    use super::Counter;
    export!(Counter);
}

use std::cell::RefCell;
use std::collections::BTreeMap;

use bindings::jobhost::operator::types::{Batch, Context, ModuleInfo, StateOrigin};
use jobhost_guest::{BatchBuilder, decode_state_exact, encode_state, records};
use serde::{Deserialize, Serialize};

jobhost_guest::batch_type!(Batch);

const STATE_VERSION: u32 = 1;

/// State version 1; `counter-v2` keeps a copy of this definition to migrate from it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Each word seen, with how many times it was seen.
    counts: BTreeMap<Vec<u8>, u64>,
}

impl State {
    /// Counts an occurrence of `word`, and returns the value to emit for it.
    fn count(&mut self, word: &[u8]) -> Vec<u8> {
        let count = self.counts.entry(word.to_vec()).or_default();
        *count += 1;
        [word, format!(" {count}").as_bytes()].concat()
    }
}

thread_local! {
    static STATE: RefCell<State> = RefCell::default();
}

struct Counter;

impl bindings::Guest for Counter {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "word-counter".to_owned(),
            version: "1.0.0".to_owned(),
        }
    }

    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn snapshot(_checkpoint_id: u64) -> Result<Vec<u8>, String> {
        STATE.with_borrow(|state| encode_state(STATE_VERSION, state))
    }

    fn restore(state: Vec<u8>, _origin: StateOrigin) -> Result<(), String> {
        STATE.set(decode_state_exact(&state, STATE_VERSION)?);
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, String> {
        let mut records = records(&input)?;
        let mut output = BatchBuilder::new();
        STATE.with_borrow_mut(|state| {
            records.try_for_each(|r| output.push(r.key, &state.count(r.key), r.timestamp))
        })?;
        Ok(output.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::Guest;

    #[test]
    fn counts_words_and_writes_version_1() {
        let mut input = BatchBuilder::new();
        for (word, timestamp) in [("a", 1), ("b", 2), ("a", 3), ("a", 4)] {
            input
                .push(word.as_bytes(), word.as_bytes(), timestamp)
                .unwrap();
        }
        let output = Counter::process(input.into()).unwrap();
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

        // The blob that counter-v2's migration test reads.
        let blob = Counter::snapshot(1).unwrap();
        assert_eq!(blob, [1, 2, 1, b'a', 3, 1, b'b', 1]);

        let origin = StateOrigin {
            module_name: "word-counter".to_owned(),
            module_version: "2.0.0".to_owned(),
            module_sha256: String::new(),
        };
        assert_eq!(
            Counter::restore(vec![2, 0], origin),
            Err("unsupported state version 2: this module reads state version 1".to_owned())
        );
    }
}
