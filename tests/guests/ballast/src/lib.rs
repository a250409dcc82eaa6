//! A pass-through operator that carries `state_bytes` bytes of state (config key, default 0),
//! for benchmarks of snapshots, savepoints, upgrades and the component boundary: each subtask
//! not restored fills its state with pseudo-random bytes when first called after `init`
//! (`process` or `snapshot`), writes it whole in `snapshot` (as operator state), and takes it
//! back in `restore`. `process` returns its input batch as it is.
//!
//! The state is made at the first call rather than in `init`, which cannot know whether a
//! `restore` follows: a restored subtask makes none (making 100 MiB took about 300 ms, which
//! timed the benchmark's operator instead of the restore).
//!
//! It implements the generated bindings directly rather than the SDK's `Operator`, so that the
//! boundary benchmark measures the boundary and nothing else (no copy into a new batch).

use std::cell::{Cell, RefCell};

use jobhost_guest::bindings::operator::Guest;
use jobhost_guest::{Batch, Context, ModuleInfo, Restored, Snapshot, StateOrigin};

thread_local! {
    static STATE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    /// The state still to make (its size and seed), until the first call or a `restore`.
    static UNMADE: Cell<Option<(usize, u64)>> = const { Cell::new(None) };
}

/// Makes the state `init` asked for, unless it is made or was restored.
fn made() {
    if let Some((bytes, mut seed)) = UNMADE.take() {
        let state = (0..bytes)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        STATE.set(state);
    }
}

/// The ballast; its state lives in `STATE`.
pub struct Ballast;

impl Guest for Ballast {
    fn describe() -> ModuleInfo {
        jobhost_guest::module("ballast", "1.0.0")
    }

    fn init(ctx: Context) -> Result<(), String> {
        let bytes: usize = jobhost_guest::config_or(&ctx.config, "state_bytes", 0)?;
        let seed = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(ctx.subtask);
        UNMADE.set(Some((bytes, seed)));
        Ok(())
    }

    fn snapshot(_checkpoint: u64, _full: bool) -> Result<Snapshot, String> {
        made();
        Ok(Snapshot {
            operator_state: STATE.with_borrow(Clone::clone),
            key_groups: Vec::new(),
        })
    }

    fn restore(mut state: Restored, _origin: StateOrigin) -> Result<(), String> {
        UNMADE.set(None);
        STATE.set(state.operator_states.pop().unwrap_or_default());
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, String> {
        made();
        Ok(input)
    }
}

jobhost_guest::bindings::operator::export_operator_world!(
    Ballast with_types_in jobhost_guest::bindings::operator
);
