//! A stateless operator that splits each input value (a line of text) into words: maximal runs
//! of alphanumeric characters, lower-cased. It emits one record per word, with the word as both
//! key and value and the line's timestamp. Bytes that are not UTF-8 separate words.

mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
    wit_bindgen::generate!({ world: "operator", path: "../../wit" });
    use super::Tokenizer;
    export!(Tokenizer);
}

use bindings::jobhost::operator::types::{Batch, Context, ModuleInfo, StateOrigin};
use jobhost_guest::{BatchBuilder, records};

jobhost_guest::batch_type!(Batch);

struct Tokenizer;

impl bindings::Guest for Tokenizer {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "tokenizer".to_owned(),
            version: "1.0.0".to_owned(),
        }
    }

    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn snapshot(_checkpoint_id: u64) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }

    fn restore(state: Vec<u8>, origin: StateOrigin) -> Result<(), String> {
        if state.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "the tokenizer is stateless, but was given {} bytes of state written by {} {}",
                state.len(),
                origin.module_name,
                origin.module_version
            ))
        }
    }

    fn process(input: Batch) -> Result<Batch, String> {
        let mut output = BatchBuilder::new();
        for r in records(&input)? {
            let line = String::from_utf8_lossy(r.value);
            for word in line
                .split(|c: char| !c.is_alphanumeric())
                .filter(|w| !w.is_empty())
            {
                let word = word.to_lowercase();
                output.push(word.as_bytes(), word.as_bytes(), r.timestamp)?;
            }
        }
        Ok(output.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bindings::Guest;

    #[test]
    fn splits_lines_into_lower_case_words() {
        let mut input = BatchBuilder::new();
        input
            .push(b"", "Hello, World! Été x2-go".as_bytes(), 7)
            .unwrap();
        input.push(b"", b"  \xffBAD\xffbytes ", 8).unwrap();
        let output = Tokenizer::process(input.into()).unwrap();
        let words: Vec<_> = records(&output)
            .unwrap()
            .map(|r| {
                assert_eq!(r.key, r.value);
                (String::from_utf8(r.value.to_vec()).unwrap(), r.timestamp)
            })
            .collect();
        let expected = [
            ("hello", 7),
            ("world", 7),
            ("été", 7),
            ("x2", 7),
            ("go", 7),
            ("bad", 8),
            ("bytes", 8),
        ];
        assert_eq!(words, expected.map(|(word, t)| (word.to_owned(), t)));
    }
}
