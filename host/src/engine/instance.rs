//! One subtask's instance of a component: its own `Store`, memory limit, grants and a
//! deadline on every call.
//!
//! Every guest call has three outcomes, kept apart: it returned, it refused (the guest
//! returned `Err`), or it trapped (including running past its deadline or memory limit).
//! Both failures name the subtask and the call.

use std::time::Duration;

use wasmtime::component::{Func, ResourceTable};
use wasmtime::{Store, UpdateDeadline};

use super::bindings::{Batch, Context, ModuleInfo, PollResult, Snapshot, StateOrigin};
use super::borrowed::RestoredRef;
use super::time::{GuestTime, TimerRequest, TimerRoom, time_domain};
use super::wasi::{Grants, wasi_context};
use super::world::{Bindings, StateExports};
use super::{EPOCH_TICK_MS, Engine, EngineError, HostState, Module};
use crate::ids::SubtaskId;
use crate::time::Domain;

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

/// A live instance owned by one subtask.
pub struct Instance {
    subtask: SubtaskId,
    /// The most bytes one call may hand the host ([`super::store_limits::lifted_bytes_max`]).
    lifted_bytes_max: usize,
    store: Store<HostState>,
    bindings: Bindings,
    /// Its exports that take state, called with state they borrow ([`RestoredRef`]) rather
    /// than through the bindings, whose `Restored` owns a copy.
    state_exports: StateExports,
    call_ticks_max: u64,
    /// The key groups its subtask owns, as `init` told the guest (none before).
    key_groups: std::ops::Range<u32>,
    /// The number of key groups, as `init` told the guest (0 before).
    max_parallelism: u32,
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
        let lifted_bytes_max = super::store_limits::lifted_bytes_max(limits.memory_bytes_max);
        let state = HostState {
            wasi: wasi_context(&subtask, &grants)?,
            table: ResourceTable::new(),
            limits: super::store_limits::store_limits(limits.memory_bytes_max),
            ticks_left: 0,
            time: GuestTime::new(grants.clock),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        store.set_hostcall_fuel(lifted_bytes_max);
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
            lifted_bytes_max,
            store,
            bindings,
            state_exports,
            call_ticks_max: limits.call_ms_max.div_ceil(EPOCH_TICK_MS),
            key_groups: 0..0,
            max_parallelism: 0,
        })
    }
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
            Bindings::Operator(b, _) => bounded(deadline, b.$method(&mut $self.store $(, $arg)*)).await,
            Bindings::Sink(b) => bounded(deadline, b.$method(&mut $self.store $(, $arg)*)).await,
        }
    }};
}

/// Calls an export that only one role's world has; the runtime never calls it on another.
macro_rules! call_role {
    ($self:ident, $role:ident, $method:ident, $name:literal $(, $arg:expr)*) => {{
        let deadline = $self.arm_deadline();
        let Bindings::$role(b, ..) = &$self.bindings else {
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
        let mut trap = e.root_cause().to_string();
        if trap.starts_with(super::store_limits::LIFTED_TOO_MUCH) {
            trap = format!(
                "it handed the host more than {} bytes in one call (twice its memory limit: \
                 lists aliasing one buffer?); {trap}",
                self.lifted_bytes_max
            );
        }
        GuestError::Trapped {
            subtask: self.subtask.clone(),
            call,
            trap,
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
        self.max_parallelism = context.max_parallelism;
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

    /// Whether its module keeps timers (`timed-operator`): its `on-timer` is called when they
    /// fire.
    pub fn keeps_timers(&self) -> bool {
        matches!(self.bindings, Bindings::Operator(_, Some(_)))
    }

    /// Opens the `timers` import for the next call (`process`, `on-timer`): `current-watermark`
    /// says `watermark`, and the guest may register timers for the keys of its subtask's key
    /// groups, up to `timers` more timers with `key_bytes` more bytes of keys.
    pub fn open_timers(&mut self, watermark: i64, timers: u64, key_bytes: u64) {
        let room = TimerRoom {
            key_groups: self.key_groups.clone(),
            max_parallelism: self.max_parallelism,
            timers,
            key_bytes,
        };
        self.store.data_mut().time.open(watermark, room);
    }

    /// Closes the `timers` import after the call: what the guest asked of its timers, in
    /// order, for the subtask to carry out.
    pub fn close_timers(&mut self) -> Vec<TimerRequest> {
        self.store.data_mut().time.close()
    }

    /// Sources: the greatest watermark the guest declared (`emit-watermark`) since last asked.
    pub fn take_declared_watermark(&mut self) -> Option<i64> {
        self.store.data_mut().time.take_declared()
    }

    /// Operators that keep timers: hands the timers of `domain` that fired (keys and times in
    /// `fired`) to `on-timer`; returns what it emits.
    pub async fn on_timer(&mut self, domain: Domain, fired: &Batch) -> Result<Batch, GuestError> {
        let deadline = self.arm_deadline();
        let Bindings::Operator(_, Some(timed)) = &self.bindings else {
            unreachable!("`on-timer` called on an instance without timers")
        };
        let call = timed.call_on_timer(&mut self.store, time_domain(domain), fired);
        let result = bounded(deadline, call).await;
        self.outcome("on-timer", result)
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
