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
//! - `refuse-restore`: returns an error from `restore` (`hostile: refusing to restore as
//!   configured`);
//! - `refuse-snapshot`: returns an error from the next `snapshot`;
//! - `stray-key-group`: returns, in the next `snapshot`, a key group its subtask does not own
//!   (another subtask's, or one past the job's max parallelism);
//! - `alias-snapshot`: returns, in the next `snapshot`, `alias_copies` entries for one key
//!   group that all name the same buffer of `alias_bytes` bytes (what no honest guest does: it
//!   asks the host to copy the buffer `alias_copies` times);
//! - `trap-in-changes`: traps in `restore-changes` (a live swap's catch-up);
//! - `refuse-changes`: returns an error from `restore-changes` (`hostile: refusing the changes
//!   as configured`);
//! - `escape`: tries to read `/etc/passwd`, outside any grant, and reports what happened;
//! - `read-clock`: reports what the wall clock says (in an error);
//! - `read-random`: reports a hash seeded from `wasi:random` (in an error);
//! - `work`: busy-works for `work_ms` milliseconds in one `process` call, once per instance,
//!   then behaves; it measures the time on the monotonic clock, so it needs `clock = true`
//!   (without the grant time stands still and the work never ends);
//! - `sleep`: sleeps for `sleep_ms` milliseconds (in a host call, not computing) in one
//!   `process` call, once per instance, then behaves;
//! - `allocate`: allocates `allocate_bytes` bytes at once in one `process` call, once per
//!   instance, writes every byte, frees them, then behaves;
//! - `read-outside`: tries to read, and to stat, each of the `;`-separated `paths`, to list
//!   each of the `;`-separated `dirs`, and to create in folder `link_dir` a symlink to each of
//!   the `;`-separated `link_targets` and read through it; first it reads each of the
//!   `;`-separated `control` paths, inside its grants, failing if it cannot;
//! - `write-read-only`: tries to change folder `dir` (a read-only grant) in every way: create
//!   a file, write, append to, truncate, retime, rename and remove its existing file `file`,
//!   create and remove folders (`subdir`: an existing empty one), make a symlink, hard-link or
//!   move `file` into folder `writable_dir` (a writable grant) and move a file from there in;
//!   first it reads `file` and writes `hostile-control.txt` into `writable_dir`, failing if it
//!   cannot;
//! - `network`: tries to connect over TCP to 127.0.0.1:`port`, to send a UDP datagram to
//!   127.0.0.1:`udp_port`, to listen on a TCP port and to look up `localhost`;
//! - `none`: behaves.
//!
//! The modes `read-outside`, `write-read-only` and `network` act in the first `process` call
//! and return an error that lists every attempt: `hostile: denied N attempts (allowed: ...):
//! ...` when each failed, or `hostile: escaped: ...` naming those that succeeded, with what they
//! read (so that a test can look for it in the host's log).
//!
//! With config key `once_marker` (a path in a writable grant), it misbehaves only if that file
//! does not exist yet, creating it first: a restarted job then runs through.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use jobhost_guest::bindings::live_operator::Guest;
use jobhost_guest::bindings::live_operator::exports::jobhost::operator::catch_up::Guest as CatchUp;
use jobhost_guest::bindings::types::KeyGroupState;
use jobhost_guest::{
    Batch, BatchBuilder, Context, ModuleInfo, Restored, Snapshot, StateOrigin, config_value,
    decode_state_exact, encode_state, records,
};

mod escape;

const STATE_VERSION: u32 = 1;

#[derive(Default)]
struct Config {
    misbehave: String,
    after_records: u64,
    flood_records: u64,
    once_marker: Option<String>,
    work_ms: u64,
    sleep_ms: u64,
    allocate_bytes: u64,
    alias_bytes: u64,
    alias_copies: u64,
    /// The `;`-separated values of the escape modes' keys, by key.
    lists: Vec<(String, Vec<String>)>,
}

impl Config {
    /// The values of list key `key` (empty if unset).
    fn list(&self, key: &str) -> &[String] {
        self.lists
            .iter()
            .find(|(k, _)| k == key)
            .map_or(&[], |(_, values)| values)
    }

    /// The single value of key `key`, required by the current mode.
    fn one(&self, key: &str) -> Result<&str, String> {
        match self.list(key) {
            [value] => Ok(value),
            _ => Err(format!(
                "hostile: `{}` needs config key `{key}`",
                self.misbehave
            )),
        }
    }
}

/// Keys whose values are `;`-separated lists (a single value is a list of one).
const LIST_KEYS: [&str; 11] = [
    "paths",
    "dirs",
    "link_dir",
    "link_targets",
    "dir",
    "file",
    "subdir",
    "writable_dir",
    "port",
    "udp_port",
    "control",
];

#[derive(Default)]
struct State {
    config: Config,
    seen: u64,
    /// Whether the once-per-instance misbehaviours (`work`, `sleep`, `allocate`) happened.
    done: bool,
    /// A key group its subtask does not own (`stray-key-group`).
    stray_group: u32,
}

/// A key group the subtask of `ctx` does not own: the next subtask's first, else the first
/// subtask's, else (a single subtask) one past the job's max parallelism.
fn stray_group(ctx: &Context) -> u32 {
    if ctx.key_group_end < ctx.max_parallelism {
        ctx.key_group_end
    } else if ctx.key_group_start > 0 {
        0
    } else {
        ctx.max_parallelism
    }
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

/// `alias_copies` entries for key group 0, all naming one buffer of `alias_bytes` bytes.
#[allow(unsafe_code)] // the misbehaviour itself: safe Rust cannot alias owned buffers
fn aliased(config: &Config) -> Vec<KeyGroupState> {
    let bytes = config.alias_bytes as usize;
    let buffer = std::mem::ManuallyDrop::new(vec![7u8; bytes]).as_mut_ptr();
    (0..config.alias_copies)
        .map(|_| KeyGroupState {
            key_group: 0,
            delta: false,
            // SAFETY: none, deliberately: every entry owns the same buffer, so that the lowered
            // list names it `alias_copies` times. The guest never frees them (the host fails it
            // first), which is all this fixture needs.
            state: unsafe { Vec::from_raw_parts(buffer, bytes, bytes) },
        })
        .collect()
}

/// The hostile operator; it implements the generated bindings directly, to misbehave in ways
/// the SDK would not let it (its state lives in `STATE`).
pub struct Hostile;

impl Guest for Hostile {
    fn describe() -> ModuleInfo {
        jobhost_guest::module("hostile", "1.0.0")
    }

    fn init(ctx: Context) -> Result<(), String> {
        let config = Config {
            misbehave: optional(&ctx, "misbehave").unwrap_or_else(|| "none".to_owned()),
            after_records: number(&ctx, "after_records", 0)?,
            flood_records: number(&ctx, "flood_records", 10_000_000)?,
            once_marker: optional(&ctx, "once_marker"),
            work_ms: number(&ctx, "work_ms", 0)?,
            sleep_ms: number(&ctx, "sleep_ms", 0)?,
            allocate_bytes: number(&ctx, "allocate_bytes", 0)?,
            alias_bytes: number(&ctx, "alias_bytes", 1 << 20)?,
            alias_copies: number(&ctx, "alias_copies", 100)?,
            lists: LIST_KEYS
                .iter()
                .filter_map(|key| {
                    let value = optional(&ctx, key)?;
                    let values = value.split(';').map(str::to_owned).collect();
                    Some(((*key).to_owned(), values))
                })
                .collect(),
        };
        let stray_group = stray_group(&ctx);
        STATE.with_borrow_mut(|state| {
            *state = State {
                config,
                seen: 0,
                done: false,
                stray_group,
            }
        });
        Ok(())
    }

    fn snapshot(_checkpoint_id: u64, _full: bool) -> Result<Snapshot, String> {
        STATE.with_borrow(|state| {
            if due(state, "trap-in-snapshot") {
                panic!("hostile: trapping in snapshot as configured");
            }
            if due(state, "refuse-snapshot") {
                return Err("hostile: refusing to snapshot as configured".to_owned());
            }
            let key_groups = if due(state, "stray-key-group") {
                vec![KeyGroupState {
                    key_group: state.stray_group,
                    delta: false,
                    state: b"stray".to_vec(),
                }]
            } else if due(state, "alias-snapshot") {
                aliased(&state.config)
            } else {
                Vec::new()
            };
            Ok(Snapshot {
                operator_state: encode_state(STATE_VERSION, &state.seen)?,
                key_groups,
            })
        })
    }

    fn restore(state: Restored, _origin: StateOrigin) -> Result<(), String> {
        let trap = ("trap-in-restore", "trapping in restore");
        load_count(&state, trap, ("refuse-restore", "refusing to restore"))
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
            if due(state, "read-random") {
                let mut bytes = [0u8; 8];
                let hashed = std::collections::hash_map::RandomState::new();
                let hash = std::hash::BuildHasher::hash_one(&hashed, 1u8);
                bytes.copy_from_slice(&hash.to_le_bytes());
                return Err(format!(
                    "hostile: random-seeded hash {}",
                    u64::from_le_bytes(bytes)
                ));
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
            if !state.done && due(state, "work") {
                state.done = true;
                work(Duration::from_millis(state.config.work_ms));
            }
            if !state.done && due(state, "sleep") {
                state.done = true;
                std::thread::sleep(Duration::from_millis(state.config.sleep_ms));
            }
            if !state.done && due(state, "allocate") {
                state.done = true;
                allocate(state.config.allocate_bytes);
            }
            if due(state, "read-outside") {
                return Err(escape::read_outside(&state.config)?.report());
            }
            if due(state, "write-read-only") {
                return Err(escape::write_read_only(&state.config)?.report());
            }
            if due(state, "network") {
                return Err(escape::network(&state.config)?.report());
            }
            Ok(output.into())
        })
    }
}

/// Its count of records seen (summed over the old subtasks after a rescale) replaces its own;
/// unless, as configured, it traps or refuses first (each a mode and what it says it does).
fn load_count(
    state: &Restored,
    (trap, trapping): (&str, &str),
    (refuse, refusing): (&str, &str),
) -> Result<(), String> {
    STATE.with_borrow(|own| {
        if due(own, trap) {
            panic!("hostile: {trapping} as configured");
        }
        match due(own, refuse) {
            true => Err(format!("hostile: {refusing} as configured")),
            false => Ok(()),
        }
    })?;
    let mut seen = 0;
    for blob in &state.operator_states {
        seen += decode_state_exact::<u64>(blob, STATE_VERSION)?;
    }
    STATE.with_borrow_mut(|state| state.seen = seen);
    Ok(())
}

impl CatchUp for Hostile {
    fn restore_changes(changes: Restored, _origin: StateOrigin) -> Result<(), String> {
        let trap = ("trap-in-changes", "trapping in restore-changes");
        load_count(&changes, trap, ("refuse-changes", "refusing the changes"))
    }
}

// Only as a component (see `jobhost_guest::export_operator!`).
#[cfg(target_family = "wasm")]
jobhost_guest::bindings::live_operator::export_live_operator_world!(
    Hostile with_types_in jobhost_guest::bindings::live_operator
);

/// Spins for `length` of monotonic time.
fn work(length: Duration) {
    let started = Instant::now();
    let mut x = 0u64;
    while started.elapsed() < length {
        for _ in 0..1_000 {
            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1));
        }
    }
}

/// Allocates `bytes` at once and writes every one of them, so that the memory is really used.
fn allocate(bytes: u64) {
    let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
    eprintln!(
        "hostile: linear memory is {} bytes before allocating {bytes}",
        memory_bytes()
    );
    let mut hoard = vec![0u8; bytes];
    for (i, byte) in hoard.iter_mut().enumerate() {
        *byte = i as u8;
    }
    std::hint::black_box(&hoard);
    eprintln!(
        "hostile: linear memory is {} bytes with {bytes} allocated",
        memory_bytes()
    );
}

/// The size of the guest's linear memory (0 when built for anything but WebAssembly, as
/// `cargo test` does).
fn memory_bytes() -> usize {
    #[cfg(target_arch = "wasm32")]
    return core::arch::wasm32::memory_size(0) * 65_536;
    #[cfg(not(target_arch = "wasm32"))]
    0
}
