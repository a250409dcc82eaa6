//! A source that generates `records` records (config key) over `keys` distinct keys: record `i`
//! has key `k<n>` with `n` the `i`-th number of a xorshift sequence modulo `keys`, an empty
//! value and timestamp `i` (see [`timestamp`] for the config keys `disorder_ms` and `step_ms`,
//! which spread and shuffle them for the event-time tests; config key `start_ms`, default 0,
//! is added to every timestamp: event time that starts later, none of it negative). With config
//! keys `late_every` N (above 0) and `late_by_ms` L, every N-th record (`i % N == N - 1`) is
//! stamped L ms earlier still, and starts a poll of its own: the watermark the host derives
//! from the records before it reaches the operator before it, whatever the batching, so which
//! of them are late for their window is known in advance (with 1 subtask). The source of the benchmark job
//! that Apache Flink's own benchmarks run (generator -> key-by -> count per key -> discard).
//! Subtask `s` of `p` emits the records `i` with `i % p == s`; its state is the next `i` and
//! the sequence's state. The subtasks listed in config key `silent` (comma-separated indices)
//! emit nothing and never run dry: an idle partition of a source.

use jobhost_guest::{
    BatchBuilder, Context, ModuleInfo, Restore, Source, decode_state_exact, encode_state,
};
use serde::{Deserialize, Serialize};

const STATE_VERSION: u32 = 1;

/// Where the generator is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct Position {
    next: u64,
    xorshift: u64,
}

/// The first state of the key sequence (shared with the benchmark's native baseline).
pub const SEED: u64 = 0x2545_f491_4f6c_dd1d;

/// The next number of the key sequence.
pub fn step(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Record `i`'s timestamp: `i * step_ms`, less up to `disorder_ms` (a hash of `i` decides how
/// much), so that records arrive out of order by at most `disorder_ms`.
pub fn timestamp(i: u64, step_ms: u64, disorder_ms: u64) -> i64 {
    let jitter = (i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) % (disorder_ms + 1);
    (i * step_ms) as i64 - jitter as i64
}

/// The generator of one subtask.
pub struct Generator {
    records: u64,
    keys: u64,
    subtask: u64,
    parallelism: u64,
    step_ms: u64,
    disorder_ms: u64,
    /// Added to every timestamp.
    start_ms: i64,
    /// Every `late_every`-th record is stamped `late_by_ms` earlier (0: none).
    late_every: u64,
    late_by_ms: i64,
    /// Emits nothing, and never runs dry.
    silent: bool,
    at: Position,
}

impl Source for Generator {
    fn describe() -> ModuleInfo {
        jobhost_guest::module("generator", "1.0.0")
    }

    fn init(ctx: &Context) -> Result<Self, String> {
        let keys: u64 = jobhost_guest::config_or(&ctx.config, "keys", 100_000)?;
        if keys == 0 {
            return Err("config key `keys` must be at least 1".to_owned());
        }
        let silent: String = jobhost_guest::config_or(&ctx.config, "silent", String::new())?;
        let silent = silent
            .split(',')
            .any(|s| s.trim() == ctx.subtask.to_string());
        Ok(Generator {
            records: jobhost_guest::config_or(&ctx.config, "records", 1_000_000)?,
            keys,
            subtask: ctx.subtask.into(),
            parallelism: ctx.parallelism.into(),
            step_ms: jobhost_guest::config_or(&ctx.config, "step_ms", 1)?,
            disorder_ms: jobhost_guest::config_or(&ctx.config, "disorder_ms", 0)?,
            start_ms: jobhost_guest::config_or(&ctx.config, "start_ms", 0)?,
            late_every: jobhost_guest::config_or(&ctx.config, "late_every", 0)?,
            late_by_ms: jobhost_guest::config_or(&ctx.config, "late_by_ms", 0)?,
            silent,
            at: Position {
                next: 0,
                xorshift: SEED,
            },
        })
    }

    fn poll(&mut self, max_records: u32, output: &mut BatchBuilder) -> Result<bool, String> {
        if self.silent {
            return Ok(true);
        }
        let mut key = Vec::with_capacity(16);
        while self.at.next < self.records && output.len() < max_records as usize {
            let i = self.at.next;
            let late = self.late_every > 0 && i % self.late_every == self.late_every - 1;
            if late && !output.is_empty() {
                break;
            }
            let n = step(&mut self.at.xorshift) % self.keys;
            self.at.next += 1;
            if i % self.parallelism != self.subtask {
                continue;
            }
            key.clear();
            key.push(b'k');
            key.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            let mut at = self.start_ms + timestamp(i, self.step_ms, self.disorder_ms);
            if late {
                at -= self.late_by_ms;
            }
            output.push(&key, b"", at)?;
        }
        Ok(self.at.next < self.records)
    }

    fn snapshot(&mut self, _checkpoint: u64) -> Result<Vec<u8>, String> {
        encode_state(STATE_VERSION, &self.at)
    }

    fn restore(&mut self, from: Restore) -> Result<(), String> {
        let [state] = &from.states[..] else {
            return Err("the generator does not rescale".to_owned());
        };
        self.at = decode_state_exact(state, STATE_VERSION)?;
        Ok(())
    }
}

jobhost_guest::export_source!(Generator);
