//! A source that generates `records` records (config key) over `keys` distinct keys: record `i`
//! has key `k<n>` with `n` the `i`-th number of a xorshift sequence modulo `keys`, an empty
//! value and timestamp `i`. The source of the benchmark job that Apache Flink's own benchmarks
//! run (generator -> key-by -> count per key -> discard). Subtask `s` of `p` emits the records
//! `i` with `i % p == s`; its state is the next `i` and the sequence's state.

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

/// The generator of one subtask.
pub struct Generator {
    records: u64,
    keys: u64,
    subtask: u64,
    parallelism: u64,
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
        Ok(Generator {
            records: jobhost_guest::config_or(&ctx.config, "records", 1_000_000)?,
            keys,
            subtask: ctx.subtask.into(),
            parallelism: ctx.parallelism.into(),
            at: Position {
                next: 0,
                xorshift: SEED,
            },
        })
    }

    fn poll(&mut self, max_records: u32, output: &mut BatchBuilder) -> Result<bool, String> {
        let mut key = Vec::with_capacity(16);
        while self.at.next < self.records && output.len() < max_records as usize {
            let i = self.at.next;
            let n = step(&mut self.at.xorshift) % self.keys;
            self.at.next += 1;
            if i % self.parallelism != self.subtask {
                continue;
            }
            key.clear();
            key.push(b'k');
            key.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
            output.push(&key, b"", i as i64)?;
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
