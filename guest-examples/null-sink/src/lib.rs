//! A sink that discards every record: the end of benchmark pipelines, so that they measure the
//! host and the operators rather than a disk. Its state is the number of records it was given.

mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
    wit_bindgen::generate!({ world: "sink", path: "../../wit" });
    use super::NullSink;
    export!(NullSink);
}

use std::cell::Cell;

use bindings::jobhost::operator::types::{Batch, Context, ModuleInfo, StateOrigin};
use jobhost_guest::{decode_state_exact, encode_state};

const STATE_VERSION: u32 = 1;

thread_local! {
    static RECORDS: Cell<u64> = const { Cell::new(0) };
}

struct NullSink;

impl bindings::Guest for NullSink {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "null-sink".to_owned(),
            version: "1.0.0".to_owned(),
        }
    }

    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn snapshot(_checkpoint_id: u64) -> Result<Vec<u8>, String> {
        encode_state(STATE_VERSION, &RECORDS.get())
    }

    fn restore(state: Vec<u8>, _origin: StateOrigin) -> Result<(), String> {
        RECORDS.set(decode_state_exact(&state, STATE_VERSION)?);
        Ok(())
    }

    fn write_batch(input: Batch) -> Result<(), String> {
        RECORDS.set(RECORDS.get() + input.timestamps.len() as u64);
        Ok(())
    }

    fn prepare_commit(_checkpoint_id: u64) -> Result<(), String> {
        Ok(())
    }

    fn commit(_checkpoint_id: u64) -> Result<(), String> {
        Ok(())
    }

    fn recover(_checkpoint_id: u64) -> Result<(), String> {
        Ok(())
    }
}
