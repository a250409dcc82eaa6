//! A stateless operator that splits each input value (a line of text) into words: maximal runs
//! of alphanumeric characters, lower-cased. It emits one record per word, with the word as both
//! key and value and the line's timestamp. Bytes that are not UTF-8 separate words.

use jobhost_guest::{BatchBuilder, Context, Keyed, ModuleInfo, Operator, Records};

/// The tokenizer; its one buffer is reused for every word.
#[derive(Default)]
pub struct Tokenizer {
    word: String,
}

impl Operator for Tokenizer {
    type Value = ();

    fn describe() -> ModuleInfo {
        jobhost_guest::module("tokenizer", "1.0.0")
    }

    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(Tokenizer::default())
    }

    fn process(
        &mut self,
        input: Records<'_>,
        _keyed: &mut Keyed<()>,
        output: &mut BatchBuilder,
    ) -> Result<(), String> {
        for r in input {
            let line = String::from_utf8_lossy(r.value);
            for word in line.split(|c: char| !c.is_alphanumeric()) {
                if word.is_empty() {
                    continue;
                }
                self.word.clear();
                self.word.extend(word.chars().flat_map(char::to_lowercase));
                output.push(self.word.as_bytes(), self.word.as_bytes(), r.timestamp)?;
            }
        }
        Ok(())
    }
}

jobhost_guest::export_operator!(Tokenizer);

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::{Batch, records};

    #[test]
    fn splits_lines_into_lower_case_words() {
        let mut input = BatchBuilder::new();
        input
            .push(b"", "Hello, World! Été x2-go".as_bytes(), 7)
            .unwrap();
        input.push(b"", b"  \xffBAD\xffbytes ", 8).unwrap();
        let input: Batch = input.into();
        let mut output = BatchBuilder::new();
        let mut tokenizer = Tokenizer::default();
        let mut keyed = Keyed::new(0..0);
        let records_in = records(&input).unwrap();
        tokenizer
            .process(records_in, &mut keyed, &mut output)
            .unwrap();
        let output: Batch = output.into();
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
