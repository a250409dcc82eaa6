//! What runs a subtask's role: a component's instance ([`engine::Instance`]) or a connector
//! built into the host ([`Connector`]). The subtask's loop, building, restoring and
//! checkpointing call one or the other through the same role calls, so that barriers,
//! snapshots, restore at another parallelism and `recover` work alike for both.

use std::sync::Arc;

use crate::connectors::{Connector, ConnectorError};
use crate::engine::bindings::{Batch, Context, ModuleInfo, PollResult, Snapshot, StateOrigin};
use crate::engine::borrowed::RestoredRef;
use crate::engine::time::TimerRequest;
use crate::engine::{self, GuestError};
use crate::ids::SubtaskId;
use crate::time::Domain;

/// A subtask's component instance or connector.
// One per subtask, for its life, never moved on the hot path: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
pub enum RoleInstance {
    /// A WebAssembly component's instance.
    Component(engine::Instance),
    /// A connector built into the host.
    Connector(Connector),
}

/// A role call that failed: in a component (refused or trapped) or in a connector.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The guest refused or trapped.
    #[error(transparent)]
    Guest(#[from] GuestError),
    /// The connector failed (its server, its state, its configuration).
    #[error(transparent)]
    Connector(Arc<ConnectorError>),
}

impl From<ConnectorError> for CallError {
    fn from(error: ConnectorError) -> Self {
        CallError::Connector(Arc::new(error))
    }
}

/// Calls `$method` on the component or the connector, with the same arguments.
macro_rules! either {
    ($self:ident, $method:ident $(, $arg:expr)*) => {
        match $self {
            RoleInstance::Component(instance) => Ok(instance.$method($($arg),*).await?),
            RoleInstance::Connector(connector) => Ok(connector.$method($($arg),*).await?),
        }
    };
}

impl From<engine::Instance> for RoleInstance {
    fn from(instance: engine::Instance) -> Self {
        RoleInstance::Component(instance)
    }
}

impl RoleInstance {
    /// The subtask it belongs to.
    pub fn subtask(&self) -> &SubtaskId {
        match self {
            RoleInstance::Component(instance) => instance.subtask(),
            RoleInstance::Connector(connector) => connector.subtask(),
        }
    }

    /// Its name, version and rescale rule (a connector's version is its state format's).
    pub async fn describe(&mut self) -> Result<ModuleInfo, CallError> {
        match self {
            RoleInstance::Component(instance) => Ok(instance.describe().await?),
            RoleInstance::Connector(connector) => Ok(connector.describe()),
        }
    }

    /// Starts a component's subtask (a connector started when it connected).
    pub async fn init(&mut self, context: &Context) -> Result<(), CallError> {
        match self {
            RoleInstance::Component(instance) => Ok(instance.init(context).await?),
            RoleInstance::Connector(_) => Ok(()),
        }
    }

    /// The key groups its subtask owns (none for a connector: its state is operator state).
    pub fn key_groups(&self) -> std::ops::Range<u32> {
        match self {
            RoleInstance::Component(instance) => instance.key_groups(),
            RoleInstance::Connector(_) => 0..0,
        }
    }

    /// Its state for `checkpoint` (every key group with `full`, else those changed).
    pub async fn snapshot(&mut self, checkpoint: u64, full: bool) -> Result<Snapshot, CallError> {
        match self {
            RoleInstance::Component(instance) => Ok(instance.snapshot(checkpoint, full).await?),
            RoleInstance::Connector(connector) => Ok(connector.snapshot(checkpoint)?),
        }
    }

    /// Loads state `origin` wrote. Touches nothing outside.
    pub async fn restore(
        &mut self,
        state: &RestoredRef<'_>,
        origin: &StateOrigin,
    ) -> Result<(), CallError> {
        match self {
            RoleInstance::Component(instance) => Ok(instance.restore(state, origin).await?),
            RoleInstance::Connector(connector) => Ok(connector.restore(state, origin)?),
        }
    }

    /// Operators: transforms a batch (connectors are sources and sinks only).
    pub async fn process(&mut self, input: &Batch) -> Result<Batch, CallError> {
        match self {
            RoleInstance::Component(instance) => Ok(instance.process(input).await?),
            RoleInstance::Connector(_) => unreachable!("no connector is an operator"),
        }
    }

    /// Whether it keeps timers (a component of `timed-operator`; never a connector).
    pub fn keeps_timers(&self) -> bool {
        match self {
            RoleInstance::Component(instance) => instance.keeps_timers(),
            RoleInstance::Connector(_) => false,
        }
    }

    /// Opens a timed component's `timers` import for its next call (see
    /// [`engine::Instance::open_timers`]).
    pub fn open_timers(&mut self, watermark: i64, timers: u64, key_bytes: u64) {
        if let RoleInstance::Component(instance) = self {
            instance.open_timers(watermark, timers, key_bytes);
        }
    }

    /// Closes a timed component's `timers` import: what it asked of its timers.
    pub fn close_timers(&mut self) -> Vec<TimerRequest> {
        match self {
            RoleInstance::Component(instance) => instance.close_timers(),
            RoleInstance::Connector(_) => Vec::new(),
        }
    }

    /// Sources: the greatest watermark a `timed-source` guest declared since last asked (a
    /// connector declares none: its records' timestamps make its watermark).
    pub fn take_declared_watermark(&mut self) -> Option<i64> {
        match self {
            RoleInstance::Component(instance) => instance.take_declared_watermark(),
            RoleInstance::Connector(_) => None,
        }
    }

    /// Timed operators: hands fired timers to `on-timer` (connectors keep no timers).
    pub async fn on_timer(&mut self, domain: Domain, fired: &Batch) -> Result<Batch, CallError> {
        match self {
            RoleInstance::Component(instance) => Ok(instance.on_timer(domain, fired).await?),
            RoleInstance::Connector(_) => unreachable!("no connector keeps timers"),
        }
    }

    /// Sources: at most `records_max` records, or the end.
    pub async fn poll(&mut self, records_max: u32) -> Result<PollResult, CallError> {
        either!(self, poll, records_max)
    }

    /// Sinks: takes a batch into the open transaction.
    pub async fn write(&mut self, input: &Batch) -> Result<(), CallError> {
        either!(self, write, input)
    }

    /// Sinks: makes the open transaction checkpoint `checkpoint`'s.
    pub async fn prepare_commit(&mut self, checkpoint: u64) -> Result<(), CallError> {
        either!(self, prepare_commit, checkpoint)
    }

    /// Sinks: publishes every transaction up to `checkpoint`.
    pub async fn commit(&mut self, checkpoint: u64) -> Result<(), CallError> {
        either!(self, commit, checkpoint)
    }

    /// Sinks: reconciles the outside world with the restored checkpoint `checkpoint`.
    pub async fn recover(&mut self, checkpoint: u64) -> Result<(), CallError> {
        either!(self, recover, checkpoint)
    }
}
