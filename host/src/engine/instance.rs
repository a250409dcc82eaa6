//! One subtask's instance of a component: its own `Store`, memory limit, grants and a
//! deadline on every call.
//!
//! Every guest call has three outcomes, kept apart: it returned, it refused (the guest
//! returned `Err`), or it trapped (including running past its deadline or memory limit).
//! Both failures name the subtask and the call.

use std::time::Duration;

use super::guest_log::GuestLog;
use wasmtime::component::{
    Component, ComponentExportIndex, Func, InstancePre, Linker, ResourceTable,
};
use wasmtime::{Store, UpdateDeadline};
use wasmtime_wasi::{
    Deterministic, FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder,
};

use super::bindings::{
    Batch, Context, ModuleInfo, PollResult, Snapshot, StateOrigin, live_operator, operator, sink,
    source,
};
use super::borrowed::RestoredRef;
use super::{EPOCH_TICK_MS, Engine, EngineError, HostState, Module};
use crate::ids::Role;
use crate::ids::SubtaskId;
use crate::protected::Protected;
use crate::topology::Mount;

/// Resource limits of one instance.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest linear memory the guest may grow to, in bytes.
    pub memory_bytes_max: usize,
    /// Longest one guest call may run, in milliseconds, before it is interrupted.
    pub call_ms_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes_max: 256 << 20,
            call_ms_max: 10_000,
        }
    }
}

/// A guest call that did not return normally.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    /// The guest returned an error.
    #[error("{subtask}: `{call}` refused: {message}")]
    Refused {
        /// Which subtask.
        subtask: SubtaskId,
        /// Which export.
        call: &'static str,
        /// The guest's message.
        message: String,
    },
    /// The guest trapped, ran past its deadline or its memory limit.
    #[error("{subtask}: `{call}` trapped: {trap}")]
    Trapped {
        /// Which subtask.
        subtask: SubtaskId,
        /// Which export.
        call: &'static str,
        /// Wasmtime's description of the trap.
        trap: String,
    },
}

/// The world a role's component must implement.
pub fn world_name(role: Role) -> &'static str {
    match role {
        Role::Source => "source",
        Role::Operator => "operator",
        Role::Sink => "sink",
    }
}

/// A component linked for its role's world.
#[derive(Clone)]
pub(super) enum RolePre {
    Source(source::SourcePre<HostState>),
    /// An operator, and where its `catch-up`'s `restore-changes` export is if it has one
    /// (`live-operator`).
    Operator(
        operator::OperatorPre<HostState>,
        Option<ComponentExportIndex>,
    ),
    Sink(sink::SinkPre<HostState>),
}

impl RolePre {
    /// Links `component` and checks its exports against the world of `role`.
    pub(super) fn new(
        linker: &Linker<HostState>,
        component: &Component,
        role: Role,
    ) -> wasmtime::Result<Self> {
        let pre = linker.instantiate_pre(component)?;
        Ok(match role {
            Role::Source => RolePre::Source(source::SourcePre::new(pre)?),
            Role::Operator => {
                // Only the `catch-up` export can be missing: the rest is `operator`'s. The
                // bindings check its type; `restore-changes` is called with borrowed state.
                let live = live_operator::LiveOperatorIndices::new(&pre).ok();
                let restore_changes = live.and_then(|_| {
                    let interface = component.get_export_index(None, CATCH_UP)?;
                    component.get_export_index(Some(&interface), "restore-changes")
                });
                RolePre::Operator(operator::OperatorPre::new(pre)?, restore_changes)
            }
            Role::Sink => RolePre::Sink(sink::SinkPre::new(pre)?),
        })
    }

    fn instance_pre(&self) -> &InstancePre<HostState> {
        match self {
            RolePre::Source(pre) => pre.instance_pre(),
            RolePre::Operator(pre, _) => pre.instance_pre(),
            RolePre::Sink(pre) => pre.instance_pre(),
        }
    }
}

enum Bindings {
    Source(source::Source),
    Operator(operator::Operator),
    Sink(sink::Sink),
}

impl Bindings {
    /// The exports of `instance`, of the world `pre` checked.
    fn new(
        pre: &RolePre,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Self> {
        Ok(match pre {
            RolePre::Source(_) => Bindings::Source(source::Source::new(store, instance)?),
            RolePre::Operator(..) => Bindings::Operator(operator::Operator::new(store, instance)?),
            RolePre::Sink(_) => Bindings::Sink(sink::Sink::new(store, instance)?),
        })
    }
}

/// A live instance owned by one subtask.
pub struct Instance {
    subtask: SubtaskId,
    store: Store<HostState>,
    bindings: Bindings,
    /// Its exports that take state, called with state they borrow ([`RestoredRef`]) rather
    /// than through the bindings, whose `Restored` owns a copy.
    state_exports: StateExports,
    call_ticks_max: u64,
    /// The key groups its subtask owns, as `init` told the guest (none before).
    key_groups: std::ops::Range<u32>,
}

/// An instance's exports that take state: `restore`, and `catch-up`'s `restore-changes` in a
/// `live-operator`.
struct StateExports {
    restore: Func,
    restore_changes: Option<Func>,
}

impl StateExports {
    /// Those of `instance`; `restore-changes` only where `pre` found it.
    fn new(
        pre: &RolePre,
        store: &mut Store<HostState>,
        instance: &wasmtime::component::Instance,
    ) -> wasmtime::Result<Self> {
        let missing = |name| move || wasmtime::Error::msg(format!("no `{name}` export"));
        let restore = instance.get_func(&mut *store, "restore");
        let restore = restore.ok_or_else(missing("restore"))?;
        let restore_changes = match pre {
            RolePre::Operator(_, Some(index)) => {
                let func = instance.get_func(&mut *store, index);
                Some(func.ok_or_else(missing("restore-changes"))?)
            }
            _ => None,
        };
        Ok(Self {
            restore,
            restore_changes,
        })
    }
}

/// The `catch-up` interface's name, as a component exports it (the WIT package's version:
/// a test reads it from `wit/operator.wit`).
const CATCH_UP: &str = "jobhost:operator/catch-up@0.3.2";

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

impl Engine {
    /// Instantiates `module` for `subtask` in a fresh store with `limits` and `grants`.
    pub async fn instantiate(
        &self,
        module: &Module,
        subtask: SubtaskId,
        limits: Limits,
        grants: Grants<'_>,
    ) -> Result<Instance, EngineError> {
        let state = HostState {
            wasi: wasi_context(&subtask, &grants)?,
            table: ResourceTable::new(),
            limits: super::store_limits::store_limits(limits.memory_bytes_max),
            ticks_left: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.ticks_left == 0 {
                return Ok(UpdateDeadline::Interrupt);
            }
            state.ticks_left -= 1;
            // Yield to tokio at every tick so a busy guest never pins a worker thread.
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(tokio::task::yield_now()),
            ))
        });
        store.data_mut().ticks_left = limits.call_ms_max.div_ceil(EPOCH_TICK_MS);
        store.set_epoch_deadline(1);
        let failed = |e: wasmtime::Error| EngineError::Instantiate {
            module: module.path.clone(),
            reason: format!("{e:#}"),
        };
        let instance = module
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await;
        let instance = instance.map_err(failed)?;
        let bindings = Bindings::new(&module.pre, &mut store, &instance).map_err(failed)?;
        let state_exports =
            StateExports::new(&module.pre, &mut store, &instance).map_err(failed)?;
        Ok(Instance {
            subtask,
            store,
            bindings,
            state_exports,
            call_ticks_max: limits.call_ms_max.div_ceil(EPOCH_TICK_MS),
            key_groups: 0..0,
        })
    }
}

/// What WASI gives `subtask`'s guest: its log, a frozen clock unless granted the real one,
/// randomness fixed by its name, and its mounts (read-only unless granted writes).
fn wasi_context(subtask: &SubtaskId, grants: &Grants<'_>) -> Result<WasiCtx, EngineError> {
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

/// Runs a guest call for at most `deadline` of wall-clock time. Epoch interruption stops a
/// guest computing past its deadline; this stops one blocked in a host call (a sleep, a slow
/// read) that the epoch never sees. A call cut short leaves its instance unusable, which is
/// how a trap leaves it too: the subtask fails, and a restart builds a new instance.
async fn bounded<T>(
    deadline: Duration,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(_) => Err(wasmtime::Error::msg(format!(
            "interrupt: still running after its deadline of {} ms (blocked outside WebAssembly)",
            deadline.as_millis()
        ))),
    }
}

/// Calls an export that every world has (`describe`, `init`, `snapshot`, `restore`).
macro_rules! call_stateful {
    ($self:ident, $method:ident $(, $arg:expr)*) => {{
        let deadline = $self.arm_deadline();
        match &$self.bindings {
            Bindings::Source(b) => bounded(deadline, b.$method(&mut $self.store $(, $arg)*)).await,
            Bindings::Operator(b) => bounded(deadline, b.$method(&mut $self.store $(, $arg)*)).await,
            Bindings::Sink(b) => bounded(deadline, b.$method(&mut $self.store $(, $arg)*)).await,
        }
    }};
}

/// Calls an export that only one role's world has; the runtime never calls it on another.
macro_rules! call_role {
    ($self:ident, $role:ident, $method:ident, $name:literal $(, $arg:expr)*) => {{
        let deadline = $self.arm_deadline();
        let Bindings::$role(b) = &$self.bindings else {
            unreachable!(concat!("`", $name, "` called on a subtask that is not a ", stringify!($role)))
        };
        let result = bounded(deadline, b.$method(&mut $self.store $(, $arg)*)).await;
        $self.outcome($name, result)
    }};
}

impl Instance {
    /// The subtask this instance belongs to.
    pub fn subtask(&self) -> &SubtaskId {
        &self.subtask
    }

    /// Arms the epoch deadline of the next call; returns its wall-clock deadline.
    fn arm_deadline(&mut self) -> Duration {
        self.store.data_mut().ticks_left = self.call_ticks_max;
        self.store.set_epoch_deadline(1);
        Duration::from_millis(self.call_ticks_max * EPOCH_TICK_MS)
    }

    fn trapped(&self, call: &'static str, e: wasmtime::Error) -> GuestError {
        // The root cause says what happened ("call stack exhausted", "out of fuel"); the full
        // chain carries the guest backtrace, for the log.
        tracing::debug!(subtask = %self.subtask, call, "guest trapped: {e:?}");
        GuestError::Trapped {
            subtask: self.subtask.clone(),
            call,
            trap: e.root_cause().to_string(),
        }
    }

    fn outcome<T>(
        &self,
        call: &'static str,
        result: wasmtime::Result<Result<T, String>>,
    ) -> Result<T, GuestError> {
        match result {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) => Err(GuestError::Refused {
                subtask: self.subtask.clone(),
                call,
                message,
            }),
            Err(e) => Err(self.trapped(call, e)),
        }
    }

    /// The module's name and version.
    pub async fn describe(&mut self) -> Result<ModuleInfo, GuestError> {
        let result = call_stateful!(self, call_describe);
        result.map_err(|e| self.trapped("describe", e))
    }

    /// The key groups its subtask owns: a snapshot may hold no other.
    pub fn key_groups(&self) -> std::ops::Range<u32> {
        self.key_groups.clone()
    }

    /// Starts the subtask.
    pub async fn init(&mut self, context: &Context) -> Result<(), GuestError> {
        self.key_groups = context.key_group_start..context.key_group_end;
        let result = call_stateful!(self, call_init, context);
        self.outcome("init", result)
    }

    /// Serializes the subtask's state: every key group with `full`, else those changed.
    pub async fn snapshot(&mut self, checkpoint: u64, full: bool) -> Result<Snapshot, GuestError> {
        let result = call_stateful!(self, call_snapshot, checkpoint, full);
        self.outcome("snapshot", result)
    }

    /// Restores the subtask's state from state `origin` wrote, lowered into the guest from
    /// where the host holds it.
    pub async fn restore(
        &mut self,
        state: &RestoredRef<'_>,
        origin: &StateOrigin,
    ) -> Result<(), GuestError> {
        let restore = self.state_exports.restore;
        self.call_with_state(restore, "restore", state, origin)
            .await
    }

    /// Whether the module implements `live-operator`: it can catch up (`restore_changes`).
    pub fn catches_up(&self) -> bool {
        self.state_exports.restore_changes.is_some()
    }

    /// Operators of `live-operator`: applies `changes` (written by `origin`) on top of the
    /// state `restore` loaded.
    pub async fn restore_changes(
        &mut self,
        changes: &RestoredRef<'_>,
        origin: &StateOrigin,
    ) -> Result<(), GuestError> {
        let Some(restore_changes) = self.state_exports.restore_changes else {
            unreachable!("`restore-changes` called on an instance without `catch-up`")
        };
        self.call_with_state(restore_changes, "restore-changes", changes, origin)
            .await
    }

    /// Calls `func`, the export `name` taking `(restored, state-origin)`, with `state`.
    async fn call_with_state(
        &mut self,
        func: Func,
        name: &'static str,
        state: &RestoredRef<'_>,
        origin: &StateOrigin,
    ) -> Result<(), GuestError> {
        let deadline = self.arm_deadline();
        let store = &mut self.store;
        let call = async move {
            type Params<'s, 'b> = (&'s RestoredRef<'b>, &'s StateOrigin);
            let typed = func.typed::<Params<'_, '_>, (Result<(), String>,)>(&*store)?;
            let (result,) = typed.call_async(store, (state, origin)).await?;
            Ok(result)
        };
        let result = bounded(deadline, call).await;
        self.outcome(name, result)
    }

    /// Operators: transforms a batch.
    pub async fn process(&mut self, input: &Batch) -> Result<Batch, GuestError> {
        call_role!(self, Operator, call_process, "process", input)
    }

    /// Sources: at most `max_records` records, or the end.
    pub async fn poll(&mut self, max_records: u32) -> Result<PollResult, GuestError> {
        call_role!(self, Source, call_poll_batch, "poll-batch", max_records)
    }

    /// Sinks: accepts a batch into the open transaction.
    pub async fn write(&mut self, input: &Batch) -> Result<(), GuestError> {
        call_role!(self, Sink, call_write_batch, "write-batch", input)
    }

    /// Sinks: makes the open transaction durable as checkpoint `checkpoint`'s.
    pub async fn prepare_commit(&mut self, checkpoint: u64) -> Result<(), GuestError> {
        call_role!(
            self,
            Sink,
            call_prepare_commit,
            "prepare-commit",
            checkpoint
        )
    }

    /// Sinks: publishes every transaction up to `checkpoint`.
    pub async fn commit(&mut self, checkpoint: u64) -> Result<(), GuestError> {
        call_role!(self, Sink, call_commit, "commit", checkpoint)
    }

    /// Sinks: reconciles the outside world with the restored checkpoint `checkpoint`.
    pub async fn recover(&mut self, checkpoint: u64) -> Result<(), GuestError> {
        call_role!(self, Sink, call_recover, "recover", checkpoint)
    }
}

#[cfg(test)]
mod tests {
    /// [`super::CATCH_UP`] names the interface of the WIT package the bindings come from.
    #[test]
    fn the_catch_up_interface_is_named_with_the_packages_version() {
        let wit =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/operator.wit"));
        let wit = wit.expect("the WIT package");
        let package = wit.lines().find_map(|line| line.strip_prefix("package "));
        let package = package.expect("a package line").trim_end_matches(';');
        let (name, version) = package.split_once('@').expect("a versioned package");
        assert_eq!(super::CATCH_UP, format!("{name}/catch-up@{version}"));
    }
}
