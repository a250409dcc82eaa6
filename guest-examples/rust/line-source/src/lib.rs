//! A source that reads a text file line by line.
//!
//! Config: `path`, the file's guest path (the host preopens its directory). Subtask `i` of `p`
//! emits the lines whose 0-based number `n` satisfies `n % p == i`, each as a record with an
//! empty key, the line without its line ending (`\n` or `\r\n`) as value, and `n` as timestamp.
//! Its state is the byte offset and number of the next line to read.
//!
//! It rescales (`rescale = union`): after a parallelism change every new subtask gets every old
//! subtask's position, in subtask order, and so knows which lines were already emitted (line
//! `n` was, if `n` is below the position of old subtask `n % p_old`, or was already emitted
//! before that). It reads on from the lowest old position and skips those lines.

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};

use jobhost_guest::{
    BatchBuilder, Context, ModuleInfo, Rescale, Restore, Source, config_value, decode_state,
    decode_state_version, encode_state, unsupported_version,
};
use serde::{Deserialize, Serialize};

const STATE_VERSION: u32 = 2;

/// State version 1: where the next line starts.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Position {
    /// Byte offset into the file.
    offset: u64,
    /// 0-based line number.
    line: u64,
}

/// State version 2: the position, and which lines at or after it were emitted before a
/// parallelism change (none once it is past them).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    next: Position,
    emitted: Option<Emitted>,
}

/// The lines emitted at a parallelism, by the subtasks whose states a rescaled subtask received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Emitted {
    /// For old subtask `i`: its next line, and what was emitted before its own start.
    subtasks: Vec<(u64, Option<Box<Emitted>>)>,
}

impl Emitted {
    /// Whether line `n` was emitted.
    fn covers(&self, n: u64) -> bool {
        let (next, before) = &self.subtasks[(n % self.subtasks.len() as u64) as usize];
        n < *next || before.as_ref().is_some_and(|b| b.covers(n))
    }

    /// No line at or after this one is covered.
    fn bound(&self) -> u64 {
        let each = self.subtasks.iter();
        each.map(|(next, before)| (*next).max(before.as_ref().map_or(0, |b| b.bound())))
            .max()
            .unwrap_or(0)
    }
}

fn decode(blob: &[u8]) -> Result<State, String> {
    match decode_state_version(blob)? {
        (1, body) => Ok(State {
            next: decode_state::<Position>(body)?,
            emitted: None,
        }),
        (2, body) => decode_state(body),
        (version, _) => Err(unsupported_version(version, &[1, 2])),
    }
}

/// The line source of one subtask.
pub struct LineSource {
    path: String,
    file: BufReader<File>,
    subtask: u64,
    parallelism: u64,
    state: State,
    line: Vec<u8>,
}

impl LineSource {
    fn poll_into(&mut self, max_records: u32, output: &mut BatchBuilder) -> Result<bool, String> {
        while output.len() < max_records as usize {
            self.line.clear();
            let read = self
                .file
                .read_until(b'\n', &mut self.line)
                .map_err(|e| format!("cannot read `{}`: {e}", self.path))?;
            if read == 0 {
                return Ok(false);
            }
            let number = self.state.next.line;
            self.state.next.offset += read as u64;
            self.state.next.line += 1;
            let emitted = self.state.emitted.as_ref();
            if number % self.parallelism != self.subtask
                || emitted.is_some_and(|e| e.covers(number))
            {
                continue;
            }
            let timestamp = i64::try_from(number)
                .map_err(|_| format!("line number {number} does not fit a timestamp"))?;
            output.push(&[], strip_line_ending(&self.line), timestamp)?;
        }
        if self
            .state
            .emitted
            .as_ref()
            .is_some_and(|e| self.state.next.line >= e.bound())
        {
            self.state.emitted = None;
        }
        Ok(true)
    }

    /// Goes to `state`: seeks the file to its offset.
    fn seek(&mut self, state: State) -> Result<(), String> {
        let offset = state.next.offset;
        let error = |e| format!("cannot seek `{}` to byte {offset}: {e}", self.path);
        let len = self.file.get_ref().metadata().map_err(error)?.len();
        if offset > len {
            return Err(format!(
                "cannot resume `{}` at byte {offset}: the file has only {len} bytes (was it changed?)",
                self.path
            ));
        }
        self.file.seek(SeekFrom::Start(offset)).map_err(error)?;
        self.state = state;
        Ok(())
    }
}

/// The state a subtask resumes from, given every old subtask's after a parallelism change:
/// read on from the lowest position, skipping what any old subtask emitted.
fn merge(old: Vec<State>) -> State {
    let lowest = old.iter().map(|s| s.next.clone()).min_by_key(|p| p.line);
    let subtasks = old
        .into_iter()
        .map(|s| (s.next.line, s.emitted.map(Box::new)));
    State {
        next: lowest.unwrap_or_default(),
        emitted: Some(Emitted {
            subtasks: subtasks.collect(),
        }),
    }
}

fn strip_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

impl Source for LineSource {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            rescale: Rescale::Union,
            ..jobhost_guest::module("line-source", "1.1.0")
        }
    }

    fn init(ctx: &Context) -> Result<Self, String> {
        let path = config_value(&ctx.config, "path")?.to_owned();
        let file = File::open(&path).map_err(|e| format!("cannot open `{path}`: {e}"))?;
        Ok(Self {
            path,
            file: BufReader::new(file),
            subtask: ctx.subtask.into(),
            parallelism: ctx.parallelism.into(),
            state: State::default(),
            line: Vec::new(),
        })
    }

    fn poll(&mut self, max_records: u32, output: &mut BatchBuilder) -> Result<bool, String> {
        self.poll_into(max_records, output)
    }

    fn snapshot(&mut self, _checkpoint: u64) -> Result<Vec<u8>, String> {
        encode_state(STATE_VERSION, &self.state)
    }

    fn restore(&mut self, from: Restore) -> Result<(), String> {
        let mut old = from
            .states
            .iter()
            .map(|s| decode(s))
            .collect::<Result<Vec<_>, _>>()?;
        // Its own position at the same parallelism; at another, every old subtask's.
        let state = match (u64::from(from.parallelism) == self.parallelism, old.len()) {
            (_, 0) => return Ok(()),
            (true, 1) => old.remove(0),
            (true, n) => return Err(format!("{n} positions for one subtask")),
            (false, _) => merge(old),
        };
        self.seek(state)
    }
}

jobhost_guest::export_source!(LineSource);

#[cfg(test)]
mod tests;
