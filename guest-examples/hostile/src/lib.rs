//! A pass-through operator that misbehaves on demand, so that tests can show the host contains
//! it: it forwards every record unchanged and counts them (its state), until it has seen
//! `after_records` records; then it does what config key `misbehave` says:
//!
//! - `loop`: spins forever in `process` (stopped by the host's call deadline);
//! - `trap`: panics in `process` (a trap);
//! - `grow-memory`: allocates until memory runs out (stopped by the host's memory limit);
//! - `flood`: returns a batch of `flood_records` empty records (default 10 million);
//! - `spam`: writes 10 000 lines to stderr in every `process` call, then behaves;
//! - `trap-in-snapshot`: traps in the next `snapshot`;
//! - `trap-in-restore`: traps in `restore`;
//! - `refuse-snapshot`: returns an error from the next `snapshot`;
//! - `escape`: tries to read `/etc/passwd`, outside any grant, and reports what happened;
//! - `read-clock`: reports what the wall clock says (in an error);
//! - `none`: behaves.
//!
//! With config key `once_marker` (a path in a writable grant), it misbehaves only if that file
//! does not exist yet, creating it first: a restarted job then runs through.

mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
    wit_bindgen::generate!({ world: "operator", path: "../../wit" });
    use super::Hostile;
    export!(Hostile);
}

use std::cell::RefCell;

use bindings::jobhost::operator::types::{Batch, Context, ModuleInfo, StateOrigin};
use jobhost_guest::{BatchBuilder, config_value, decode_state_exact, encode_state, records};

jobhost_guest::batch_type!(Batch);

const STATE_VERSION: u32 = 1;

#[derive(Default)]
struct Config {
    misbehave: String,
    after_records: u64,
    flood_records: u64,
    once_marker: Option<String>,
}

#[derive(Default)]
struct State {
    config: Config,
    seen: u64,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn optional(ctx: &Context, key: &str) -> Option<String> {
    config_value(&ctx.config, key).ok().map(str::to_owned)
}

fn number(ctx: &Context, key: &str, default: u64) -> Result<u64, String> {
    optional(ctx, key).map_or(Ok(default), |v| {
        v.parse()
            .map_err(|_| format!("config key `{key}`: `{v}` is not a number"))
    })
}

/// Whether the configured misbehaviour `what` is due now.
fn due(state: &State, what: &str) -> bool {
    if state.config.misbehave != what || state.seen < state.config.after_records {
        return false;
    }
    match &state.config.once_marker {
        None => true,
        Some(marker) if std::path::Path::new(marker).exists() => false,
        Some(marker) => std::fs::write(marker, b"tripped").is_ok(),
    }
}

struct Hostile;

impl bindings::Guest for Hostile {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "hostile".to_owned(),
            version: "1.0.0".to_owned(),
        }
    }

    fn init(ctx: Context) -> Result<(), String> {
        let config = Config {
            misbehave: optional(&ctx, "misbehave").unwrap_or_else(|| "none".to_owned()),
            after_records: number(&ctx, "after_records", 0)?,
            flood_records: number(&ctx, "flood_records", 10_000_000)?,
            once_marker: optional(&ctx, "once_marker"),
        };
        STATE.with_borrow_mut(|state| *state = State { config, seen: 0 });
        Ok(())
    }

    fn snapshot(_checkpoint_id: u64) -> Result<Vec<u8>, String> {
        STATE.with_borrow(|state| {
            if due(state, "trap-in-snapshot") {
                panic!("hostile: trapping in snapshot as configured");
            }
            if due(state, "refuse-snapshot") {
                return Err("hostile: refusing to snapshot as configured".to_owned());
            }
            encode_state(STATE_VERSION, &state.seen)
        })
    }

    fn restore(blob: Vec<u8>, _origin: StateOrigin) -> Result<(), String> {
        STATE.with_borrow(|state| {
            if due(state, "trap-in-restore") {
                panic!("hostile: trapping in restore as configured");
            }
        });
        let seen: u64 = decode_state_exact(&blob, STATE_VERSION)?;
        STATE.with_borrow_mut(|state| state.seen = seen);
        Ok(())
    }

    fn process(input: Batch) -> Result<Batch, String> {
        STATE.with_borrow_mut(|state| {
            let mut output = BatchBuilder::new();
            for r in records(&input)? {
                output.push(r.key, r.value, r.timestamp)?;
                state.seen += 1;
            }
            if due(state, "loop") {
                #[allow(clippy::empty_loop)]
                loop {}
            }
            if due(state, "trap") {
                panic!("hostile: trapping in process as configured");
            }
            if due(state, "grow-memory") {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1; 1 << 20]);
                }
            }
            if due(state, "spam") {
                for line in 0..10_000 {
                    eprintln!("hostile: spam line {line}");
                }
            }
            if due(state, "flood") {
                let mut flood = BatchBuilder::new();
                for _ in 0..state.config.flood_records {
                    flood.push(b"", b"", 0)?;
                }
                return Ok(flood.into());
            }
            if due(state, "read-clock") {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
                let seconds = now.map_or(0, |d| d.as_secs());
                return Err(format!(
                    "hostile: the clock reads {seconds} s since the epoch"
                ));
            }
            if due(state, "escape") {
                return match std::fs::read("/etc/passwd") {
                    Ok(bytes) => Err(format!(
                        "hostile: escaped the sandbox, read {} bytes of /etc/passwd",
                        bytes.len()
                    )),
                    Err(e) => Err(format!("hostile: denied outside the grant: {e}")),
                };
            }
            Ok(output.into())
        })
    }
}
