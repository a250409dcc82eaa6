//! A source that reads a text file line by line.
//!
//! Config: `path`, the file's guest path (the host preopens its directory). Subtask `i` of `p`
//! emits the lines whose 0-based number `n` satisfies `n % p == i`, each as a record with an
//! empty key, the line without its line ending (`\n` or `\r\n`) as value, and `n` as timestamp.
//! Its state is the byte offset and number of the next line to read.

mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
    wit_bindgen::generate!({ world: "source", path: "../../wit" });
    use super::LineSource;
    export!(LineSource);
}

use std::cell::RefCell;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};

use bindings::jobhost::operator::types::{Batch, Context, ModuleInfo, PollResult, StateOrigin};
use jobhost_guest::{BatchBuilder, config_value, decode_state_exact, encode_state};
use serde::{Deserialize, Serialize};

jobhost_guest::batch_type!(Batch);

const STATE_VERSION: u32 = 1;

/// Where the next line starts: the whole of the source's state.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Position {
    /// Byte offset into the file.
    offset: u64,
    /// 0-based line number.
    line: u64,
}

struct Reader {
    path: String,
    file: BufReader<File>,
    subtask: u64,
    parallelism: u64,
    next: Position,
    /// Set once the end of the file is reached, so that `poll-batch` keeps returning `end`.
    finished: bool,
}

impl Reader {
    fn open(ctx: &Context) -> Result<Self, String> {
        if ctx.subtask >= ctx.parallelism {
            return Err(format!(
                "subtask {} is out of range for parallelism {}",
                ctx.subtask, ctx.parallelism
            ));
        }
        let path = config_value(&ctx.config, "path")?.to_owned();
        let file = File::open(&path).map_err(|e| format!("cannot open `{path}`: {e}"))?;
        Ok(Self {
            path,
            file: BufReader::new(file),
            subtask: ctx.subtask.into(),
            parallelism: ctx.parallelism.into(),
            next: Position::default(),
            finished: false,
        })
    }

    fn poll(&mut self, max_records: u32) -> Result<PollResult, String> {
        let mut output = BatchBuilder::new();
        let mut line = Vec::new();
        while !self.finished && output.len() < max_records as usize {
            line.clear();
            let read = self
                .file
                .read_until(b'\n', &mut line)
                .map_err(|e| format!("cannot read `{}`: {e}", self.path))?;
            if read == 0 {
                self.finished = true;
                break;
            }
            let number = self.next.line;
            self.next.offset += read as u64;
            self.next.line += 1;
            if number % self.parallelism == self.subtask {
                let timestamp = i64::try_from(number)
                    .map_err(|_| format!("line number {number} does not fit a timestamp"))?;
                output.push(&[], strip_line_ending(&line), timestamp)?;
            }
        }
        Ok(if self.finished && output.is_empty() {
            PollResult::End
        } else {
            PollResult::Records(output.into())
        })
    }

    fn restore(&mut self, position: Position) -> Result<(), String> {
        let error = |e| {
            format!(
                "cannot seek `{}` to byte {}: {e}",
                self.path, position.offset
            )
        };
        let len = self.file.get_ref().metadata().map_err(error)?.len();
        if position.offset > len {
            return Err(format!(
                "cannot resume `{}` at byte {}: the file has only {len} bytes (was it changed?)",
                self.path, position.offset
            ));
        }
        self.file
            .seek(SeekFrom::Start(position.offset))
            .map_err(error)?;
        self.next = position;
        self.finished = false;
        Ok(())
    }
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

thread_local! {
    static READER: RefCell<Option<Reader>> = const { RefCell::new(None) };
}

fn with_reader<T>(f: impl FnOnce(&mut Reader) -> Result<T, String>) -> Result<T, String> {
    READER.with_borrow_mut(|reader| f(reader.as_mut().ok_or("line-source is not initialized")?))
}

struct LineSource;

impl bindings::Guest for LineSource {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "line-source".to_owned(),
            version: "1.0.0".to_owned(),
        }
    }

    fn init(ctx: Context) -> Result<(), String> {
        let reader = Reader::open(&ctx)?;
        READER.set(Some(reader));
        Ok(())
    }

    fn snapshot(_checkpoint_id: u64) -> Result<Vec<u8>, String> {
        with_reader(|reader| encode_state(STATE_VERSION, &reader.next))
    }

    fn restore(state: Vec<u8>, _origin: StateOrigin) -> Result<(), String> {
        let position = decode_state_exact(&state, STATE_VERSION)?;
        with_reader(|reader| reader.restore(position))
    }

    fn poll_batch(max_records: u32) -> Result<PollResult, String> {
        with_reader(|reader| reader.poll(max_records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::records;

    /// Subtask `subtask` of 2 reading `path`.
    fn reader(path: &std::path::Path, subtask: u32) -> Reader {
        let config = vec![("path".to_owned(), path.display().to_string())];
        let ctx = Context {
            operator_id: "lines".to_owned(),
            subtask,
            parallelism: 2,
            config,
        };
        Reader::open(&ctx).unwrap()
    }

    /// Polls `max_records`, and returns the values and timestamps, or `None` at the end.
    fn poll(reader: &mut Reader, max_records: u32) -> Option<Vec<(String, i64)>> {
        match reader.poll(max_records).unwrap() {
            PollResult::End => None,
            PollResult::Records(batch) => Some(
                records(&batch)
                    .unwrap()
                    .map(|r| {
                        assert!(r.key.is_empty());
                        (String::from_utf8(r.value.to_vec()).unwrap(), r.timestamp)
                    })
                    .collect(),
            ),
        }
    }

    fn lines(lines: &[(&str, i64)]) -> Option<Vec<(String, i64)>> {
        Some(
            lines
                .iter()
                .map(|&(line, n)| (line.to_owned(), n))
                .collect(),
        )
    }

    #[test]
    fn reads_its_share_of_lines_and_resumes() {
        let path = std::env::temp_dir().join(format!("line-source-test-{}", std::process::id()));
        std::fs::write(&path, "zero\none\r\n\nthree\nfour\nfive").unwrap();

        let mut odd = reader(&path, 1);
        assert_eq!(
            poll(&mut odd, 10),
            lines(&[("one", 1), ("three", 3), ("five", 5)])
        );
        assert_eq!(poll(&mut odd, 10), None);
        assert_eq!(poll(&mut odd, 10), None);

        let mut even = reader(&path, 0);
        assert_eq!(poll(&mut even, 0), lines(&[]));
        assert_eq!(poll(&mut even, 1), lines(&[("zero", 0)]));
        let state = encode_state(STATE_VERSION, &even.next).unwrap();
        assert_eq!(poll(&mut even, 2), lines(&[("", 2), ("four", 4)]));

        let mut resumed = reader(&path, 0);
        resumed
            .restore(decode_state_exact(&state, STATE_VERSION).unwrap())
            .unwrap();
        assert_eq!(poll(&mut resumed, 5), lines(&[("", 2), ("four", 4)]));
        assert_eq!(poll(&mut resumed, 5), None);

        let beyond = Position {
            offset: 1000,
            line: 0,
        };
        let error = format!(
            "cannot resume `{}` at byte 1000: the file has only 26 bytes (was it changed?)",
            path.display()
        );
        assert_eq!(resumed.restore(beyond), Err(error));
        std::fs::remove_file(&path).unwrap();
    }
}
