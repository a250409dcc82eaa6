//! A sink that discards every record: the end of benchmark pipelines, so that they measure the
//! host and the operators rather than a disk. Its state is the number of records it was given;
//! after a parallelism change each subtask takes its share of the old total (`union`).

use jobhost_guest::{
    Context, ModuleInfo, Records, Rescale, Restore, Sink, decode_state_exact, encode_state,
};

const STATE_VERSION: u32 = 1;

/// Counts what it discards.
pub struct NullSink {
    records: u64,
    subtask: u32,
    parallelism: u32,
}

impl Sink for NullSink {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            rescale: Rescale::Union,
            ..jobhost_guest::module("null-sink", "1.0.0")
        }
    }

    fn init(ctx: &Context) -> Result<Self, String> {
        Ok(NullSink {
            records: 0,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
        })
    }

    fn write(&mut self, input: Records<'_>) -> Result<(), String> {
        self.records += input.len() as u64;
        Ok(())
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Result<(), String> {
        Ok(())
    }

    fn commit(&mut self, _checkpoint: u64) -> Result<(), String> {
        Ok(())
    }

    fn recover(&mut self, _checkpoint: u64) -> Result<(), String> {
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint: u64) -> Result<Vec<u8>, String> {
        encode_state(STATE_VERSION, &self.records)
    }

    fn restore(&mut self, from: Restore) -> Result<(), String> {
        let counts = from
            .states
            .iter()
            .map(|s| decode_state_exact::<u64>(s, STATE_VERSION));
        let total: u64 = counts.sum::<Result<u64, String>>()?;
        self.records = match from.parallelism == self.parallelism {
            true => total,
            // Old subtasks' counts summed, and shared out so that the new ones add up to it.
            false => {
                let share = total / u64::from(self.parallelism);
                let rest = u64::from(self.subtask == 0) * (total % u64::from(self.parallelism));
                share + rest
            }
        };
        Ok(())
    }
}

jobhost_guest::export_sink!(NullSink);
