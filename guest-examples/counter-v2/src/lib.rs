//! A keyed running count of words that also remembers when each word was first seen (version
//! 2.0.0 of `word-counter`).
//!
//! For each input record, whose key is a word, it adds one to the word's count and emits the
//! word as key, `"{word} {count} first-seen={timestamp}"` as value, and the input's timestamp.
//! `first-seen` is the timestamp of the word's first occurrence, or `unknown` for a word that
//! was first counted by version 1, whose state it migrated. It writes state version 2 and reads
//! versions 1 and 2.

mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
    wit_bindgen::generate!({ world: "operator", path: "../../wit" });
    use super::Counter;
    export!(Counter);
}

use std::cell::RefCell;
use std::collections::BTreeMap;

use bindings::jobhost::operator::types::{Batch, Context, ModuleInfo, StateOrigin};
use jobhost_guest::{
    BatchBuilder, decode_state, decode_state_version, encode_state, records, unsupported_version,
};
use serde::{Deserialize, Serialize};

jobhost_guest::batch_type!(Batch);

const STATE_VERSION: u32 = 2;

/// State version 1, as written by `word-counter` 1.0.0: a copy of its definition.
#[derive(Debug, Deserialize)]
struct StateV1 {
    counts: BTreeMap<Vec<u8>, u64>,
}

/// State version 2, the current one.
#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct StateV2 {
    /// Each word seen, with how many times and since when.
    words: BTreeMap<Vec<u8>, Word>,
}

/// What is known about one word.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Word {
    count: u64,
    /// The timestamp of the word's first occurrence, unknown for words counted by version 1.
    first_seen: Option<i64>,
}

impl From<StateV1> for StateV2 {
    fn from(v1: StateV1) -> Self {
        let migrate = |(word, count)| {
            (
                word,
                Word {
                    count,
                    first_seen: None,
                },
            )
        };
        Self {
            words: v1.counts.into_iter().map(migrate).collect(),
        }
    }
}

impl StateV2 {
    fn decode(blob: &[u8]) -> Result<Self, String> {
        match decode_state_version(blob)? {
            (1, body) => decode_state::<StateV1>(body).map(Self::from),
            (2, body) => decode_state(body),
            (version, _) => Err(unsupported_version(version, &[1, 2])),
        }
    }

    /// Counts an occurrence of `word` at `timestamp`, and returns the value to emit for it.
    fn count(&mut self, word: &[u8], timestamp: i64) -> Vec<u8> {
        let new = Word {
            count: 0,
            first_seen: Some(timestamp),
        };
        let entry = self.words.entry(word.to_vec()).or_insert(new);
        entry.count += 1;
        let first_seen = entry
            .first_seen
            .map_or_else(|| "unknown".to_owned(), |t| t.to_string());
        [
            word,
            format!(" {} first-seen={first_seen}", entry.count).as_bytes(),
        ]
        .concat()
    }
}

thread_local! {
    static STATE: RefCell<StateV2> = RefCell::default();
}

struct Counter;

impl bindings::Guest for Counter {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "word-counter".to_owned(),
            version: "2.0.0".to_owned(),
        }
    }

    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn snapshot(_checkpoint_id: u64) -> Result<Vec<u8>, String> {
        STATE.with_borrow(|state| encode_state(STATE_VERSION, state))
    }

    fn restore(state: Vec<u8>, _origin: StateOrigin) -> Result<(), String> {
        STATE.set(StateV2::decode(&state)?);
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, String> {
        let mut records = records(&input)?;
        let mut output = BatchBuilder::new();
        STATE.with_borrow_mut(|state| {
            records.try_for_each(|r| {
                let value = state.count(r.key, r.timestamp);
                output.push(r.key, &value, r.timestamp)
            })
        })?;
        Ok(output.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `word-counter` 1.0.0's state definition, as in `counter-v1`.
    #[derive(Serialize)]
    struct CounterV1State {
        counts: BTreeMap<Vec<u8>, u64>,
    }

    /// What `word-counter` 1.0.0 writes after counting "a" three times and "b" once, as
    /// `counter-v1`'s own test checks.
    const V1_BLOB: [u8; 8] = [1, 2, 1, b'a', 3, 1, b'b', 1];

    #[test]
    fn v1_blob_is_what_version_1_writes() {
        let counts = BTreeMap::from([(b"a".to_vec(), 3), (b"b".to_vec(), 1)]);
        assert_eq!(
            encode_state(1, &CounterV1State { counts }).unwrap(),
            V1_BLOB
        );
    }

    #[test]
    fn migrates_a_v1_blob() {
        let mut state = StateV2::decode(&V1_BLOB).unwrap();
        let expected = BTreeMap::from([
            (
                b"a".to_vec(),
                Word {
                    count: 3,
                    first_seen: None,
                },
            ),
            (
                b"b".to_vec(),
                Word {
                    count: 1,
                    first_seen: None,
                },
            ),
        ]);
        assert_eq!(state.words, expected);
        assert_eq!(state.count(b"a", 10), b"a 4 first-seen=unknown");
        assert_eq!(state.count(b"c", 11), b"c 1 first-seen=11");
        assert_eq!(state.count(b"c", 12), b"c 2 first-seen=11");
    }

    #[test]
    fn round_trips_a_v2_blob() {
        let mut state = StateV2::decode(&V1_BLOB).unwrap();
        state.count(b"c", -5);
        let blob = encode_state(STATE_VERSION, &state).unwrap();
        assert_eq!(StateV2::decode(&blob).unwrap(), state);
    }

    #[test]
    fn refuses_other_versions() {
        let blob = encode_state(3, &StateV2::default()).unwrap();
        assert_eq!(
            StateV2::decode(&blob),
            Err("unsupported state version 3: this module reads state version 1 or 2".to_owned())
        );
        assert!(StateV2::decode(&[]).is_err());
        assert!(StateV2::decode(&[1, 5]).is_err());
    }
}
