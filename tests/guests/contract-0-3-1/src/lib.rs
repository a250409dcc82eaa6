//! A pass-through `live-operator` built against the previous version of the contract,
//! `jobhost:operator@0.3.1` (`wit/operator.wit`, a verbatim copy of that release, never
//! edited): it imports `types@0.3.1` and exports `catch-up@0.3.1`. It forwards every record
//! unchanged and keeps, as its operator state, the number of records it forwarded (8 bytes, little
//! endian), which `restore-changes` replaces.

#![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]

use std::cell::Cell;

wit_bindgen::generate!({
    world: "live-operator",
    path: "wit",
});

use exports::jobhost::operator::catch_up::Guest as CatchUp;
use jobhost::operator::types::Rescale;

thread_local! {
    static FORWARDED: Cell<u64> = const { Cell::new(0) };
}

fn load(states: &[Vec<u8>]) -> Result<(), String> {
    let total = states
        .iter()
        .try_fold(0u64, |sum, state| match state.len() {
            0 => Ok(sum),
            8 => Ok(sum + u64::from_le_bytes(state[..].try_into().expect("8 bytes"))),
            n => Err(format!("contract-0-3-1: a state of {n} bytes, not 8")),
        })?;
    FORWARDED.set(total);
    Ok(())
}

struct Component;

impl Guest for Component {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "contract-0-3-1".to_owned(),
            version: "1.0.0".to_owned(),
            rescale: Rescale::Refuse,
        }
    }

    fn init(_ctx: Context) -> Result<(), String> {
        Ok(())
    }

    fn snapshot(_checkpoint: u64, _full: bool) -> Result<Snapshot, String> {
        Ok(Snapshot {
            operator_state: FORWARDED.get().to_le_bytes().to_vec(),
            key_groups: Vec::new(),
        })
    }

    fn restore(state: Restored, _origin: StateOrigin) -> Result<(), String> {
        load(&state.operator_states)
    }

    fn process(input: Batch) -> Result<Batch, String> {
        FORWARDED.set(FORWARDED.get() + input.timestamps.len() as u64);
        Ok(Batch {
            key_groups: Vec::new(),
            ..input
        })
    }
}

impl CatchUp for Component {
    fn restore_changes(changes: Restored, _origin: StateOrigin) -> Result<(), String> {
        load(&changes.operator_states)
    }
}

export!(Component);
