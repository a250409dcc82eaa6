//! What WASI gives a guest: its log, randomness fixed by its subtask's name, the real clocks
//! only if the job file grants them, and the folders it mounts (read-only unless granted
//! writes), each opened through a capability on the folder checked.

use std::time::Duration;

use wasmtime_wasi::{
    Deterministic, FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder,
};

use super::EngineError;
use super::guest_log::GuestLog;
use crate::ids::SubtaskId;
use crate::protected::Protected;
use crate::topology::Mount;

/// What the job file grants an instance beyond computing: folders, and the clocks.
#[derive(Clone, Copy, Debug)]
pub struct Grants<'a> {
    /// Host folders it may see.
    pub mounts: &'a [Mount],
    /// Whether it may read the real clocks.
    pub clock: bool,
    /// The folders no mount may reach, checked again as each mount is opened.
    pub protected: &'a Protected,
}

/// The clocks of a guest without the clock grant: time stands still at the Unix epoch.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }
    fn now(&self) -> u64 {
        0
    }
}

/// The bytes a subtask's `wasi:random` cycles through: 256 of them, from XXH3 of its name.
fn deterministic_seed(subtask: &SubtaskId) -> Vec<u8> {
    let name = subtask.to_string();
    (0..32u64)
        .flat_map(|i| xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), i).to_le_bytes())
        .collect()
}

/// What WASI gives `subtask`'s guest: its log, a frozen clock unless granted the real one,
/// randomness fixed by its name, and its mounts (read-only unless granted writes).
pub(super) fn wasi_context(
    subtask: &SubtaskId,
    grants: &Grants<'_>,
) -> Result<WasiCtx, EngineError> {
    let mut wasi = WasiCtxBuilder::new();
    let (stdout, stderr) = GuestLog::pair(subtask);
    wasi.stdout(stdout).stderr(stderr);
    if !grants.clock {
        wasi.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
    }
    // Randomness is no grant: a guest gets bytes fixed by its subtask's name (language
    // runtimes seed their hash tables from it at start-up), so a replay sees the same.
    let seed = deterministic_seed(subtask);
    let seed_value = u128::from_le_bytes(seed[..16].try_into().expect("16 bytes"));
    wasi.secure_random(Deterministic::new(seed.clone()))
        .insecure_random(Deterministic::new(seed))
        .insecure_random_seed(seed_value);
    for mount in grants.mounts {
        let perms = if mount.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        let refused = |reason: String| EngineError::Grant {
            path: mount.host.clone(),
            reason,
        };
        let dir = grants
            .protected
            .open(&subtask.operator, mount)
            .map_err(|e| refused(e.to_string()))?;
        // WASI opens the folder by a path: the open handle's own, which names the folder
        // checked whatever its path leads to now.
        wasi.preopened_dir(handle_path(&dir), &mount.guest, perms)
            .map_err(|e| refused(format!("{e:#}")))?;
    }
    Ok(wasi.build())
}

/// Where a process finds its own open files by number.
#[cfg(target_os = "linux")]
const OWN_FILES: &str = "/proc/self/fd";
#[cfg(not(target_os = "linux"))]
const OWN_FILES: &str = "/dev/fd";

/// A path that opens the very folder `dir` holds open (`/proc/self/fd/N` on Linux).
fn handle_path(dir: &cap_std::fs::Dir) -> std::path::PathBuf {
    use std::os::fd::AsRawFd as _;
    format!("{OWN_FILES}/{}", dir.as_raw_fd()).into()
}
