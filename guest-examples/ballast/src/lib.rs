//! A pass-through operator that carries `state_bytes` bytes of state (config key, default 0),
//! for benchmarks of snapshots, savepoints and upgrades: each subtask fills its state with
//! pseudo-random bytes at `init`, writes it whole in `snapshot`, and takes it back in `restore`.
//! Records are handed on unchanged, in the same batch.

mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
    wit_bindgen::generate!({ world: "operator", path: "../../wit" });
    use super::Ballast;
    export!(Ballast);
}

use std::cell::RefCell;

use bindings::jobhost::operator::types::{Batch, Context, ModuleInfo, StateOrigin};
use jobhost_guest::config_value;

thread_local! {
    static STATE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

struct Ballast;

impl bindings::Guest for Ballast {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "ballast".to_owned(),
            version: "1.0.0".to_owned(),
        }
    }

    fn init(ctx: Context) -> Result<(), String> {
        let bytes: usize = match config_value(&ctx.config, "state_bytes") {
            Ok(v) => v
                .parse()
                .map_err(|_| format!("config key `state_bytes`: `{v}` is not a number"))?,
            Err(_) => 0,
        };
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(ctx.subtask);
        let state = (0..bytes)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        STATE.set(state);
        Ok(())
    }

    fn snapshot(_checkpoint_id: u64) -> Result<Vec<u8>, String> {
        Ok(STATE.with_borrow(Clone::clone))
    }

    fn restore(state: Vec<u8>, _origin: StateOrigin) -> Result<(), String> {
        STATE.set(state);
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, String> {
        Ok(input)
    }
}
