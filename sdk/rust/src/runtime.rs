//! What an author implements ([`Operator`], [`Source`], [`Sink`]), and the glue the
//! `export_*!` macros connect to the generated bindings: it holds the author's value between
//! calls (no author writes a `thread_local!`), turns batches into records and back, and keeps
//! keyed state by key group ([`Keyed`]).

use std::any::Any;
use std::cell::RefCell;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bindings::types::{
    Batch, Context, KeyGroupState, ModuleInfo, PollResult, Restored, Snapshot, StateOrigin,
};
use crate::envelope::{StateFormat, unsupported};
use crate::keyed::Load;
use crate::{BatchBuilder, Keyed, Records, records};

/// Operator state a subtask resumes from.
#[derive(Debug, Clone)]
pub struct Restore {
    /// The parallelism the state was written at.
    pub parallelism: u32,
    /// At the same parallelism, this subtask's own state; after a parallelism change (of a
    /// module that rescales by union), every old subtask's, entry `i` old subtask `i`'s.
    pub states: Vec<Vec<u8>>,
    /// Which module wrote it.
    pub origin: StateOrigin,
}

/// The format of an operator that keeps no keyed state.
pub const NO_KEYED_STATE: StateFormat = StateFormat {
    name: "",
    version: 0,
};

/// A map, filter, flat-map or keyed aggregation; export it with
/// [`export_operator!`](crate::export_operator).
pub trait Operator: Sized + 'static {
    /// The value kept per key by the SDK ([`Keyed`]); `()` for an operator without keyed state.
    type Value: Serialize + DeserializeOwned;
    /// The format and version of its keyed state (`docs/state-format.md`).
    const STATE: StateFormat = NO_KEYED_STATE;
    /// The module's name, version and how its operator state rescales ([`module`]).
    fn describe() -> ModuleInfo;
    /// Starts a subtask.
    fn init(ctx: &Context) -> Result<Self, String>;
    /// Transforms the records of a batch into `output`, reading and changing `keyed`.
    fn process(
        &mut self,
        input: Records<'_>,
        keyed: &mut Keyed<Self::Value>,
        output: &mut BatchBuilder,
    ) -> Result<(), String>;
    /// State not split by key, for checkpoint `checkpoint` (none by default).
    fn snapshot(&mut self, _checkpoint: u64) -> Result<Vec<u8>, String> {
        Ok(Vec::new())
    }
    /// Operator state written by `snapshot`. Called once when a subtask resumes, and once more
    /// when the module is swapped in live (`host upgrade`), with the running module's latest
    /// operator state, which replaces the one loaded first.
    fn restore(&mut self, from: Restore) -> Result<(), String> {
        no_operator_state(&from.states)
    }
    /// The entries of a key group written in an older `version` of [`Self::STATE`], into
    /// values of this version: `old.convert(|key, old: OldValue| new)` says what each becomes
    /// ([`OldEntries`](crate::OldEntries)). Refuses versions it does not read (by default, all).
    fn migrate(version: u32, _old: crate::OldEntries<'_, Self::Value>) -> Result<(), String> {
        Err(unsupported(Self::STATE, version))
    }
}

/// Produces records; export it with [`export_source!`](crate::export_source).
pub trait Source: Sized + 'static {
    /// The module's name, version and how its position rescales ([`module`]).
    fn describe() -> ModuleInfo;
    /// Starts a subtask.
    fn init(ctx: &Context) -> Result<Self, String>;
    /// Appends at most `max_records` records to `output`; `Ok(false)` once nothing more will
    /// ever come.
    fn poll(&mut self, max_records: u32, output: &mut BatchBuilder) -> Result<bool, String>;
    /// Its position, for checkpoint `checkpoint`.
    fn snapshot(&mut self, checkpoint: u64) -> Result<Vec<u8>, String>;
    /// A position written by `snapshot`.
    fn restore(&mut self, from: Restore) -> Result<(), String>;
}

/// Writes records out with two-phase commit; export it with [`export_sink!`](crate::export_sink).
pub trait Sink: Sized + 'static {
    /// The module's name, version and how its state rescales ([`module`]).
    fn describe() -> ModuleInfo;
    /// Starts a subtask.
    fn init(ctx: &Context) -> Result<Self, String>;
    /// Takes records into the open transaction.
    fn write(&mut self, input: Records<'_>) -> Result<(), String>;
    /// Makes the open transaction durable, invisible, as checkpoint `checkpoint`'s.
    fn prepare_commit(&mut self, checkpoint: u64) -> Result<(), String>;
    /// Publishes the transactions up to `checkpoint`; idempotent.
    fn commit(&mut self, checkpoint: u64) -> Result<(), String>;
    /// After `restore`, once the job starts: publishes what `checkpoint` prepared and discards
    /// what came after it. (`restore` must not touch the outside world.)
    fn recover(&mut self, checkpoint: u64) -> Result<(), String>;
    /// Its transactions, for checkpoint `checkpoint`.
    fn snapshot(&mut self, checkpoint: u64) -> Result<Vec<u8>, String>;
    /// Transactions written by `snapshot`; loads them only.
    fn restore(&mut self, from: Restore) -> Result<(), String>;
}

/// A module's account of itself, rescaling refused unless its operator state is empty.
pub fn module(name: &str, version: &str) -> ModuleInfo {
    ModuleInfo {
        name: name.to_owned(),
        version: version.to_owned(),
        rescale: crate::Rescale::Refuse,
    }
}

/// The default `restore` of operator state: there must be none.
pub fn no_operator_state(states: &[Vec<u8>]) -> Result<(), String> {
    match states.iter().all(Vec::is_empty) {
        true => Ok(()),
        false => Err("this module keeps no operator state, but the point holds some".to_owned()),
    }
}

thread_local! {
    /// The subtask's instance: one component instance is one subtask.
    static SLOT: RefCell<Option<Box<dyn Any>>> = RefCell::new(None);
}

fn put<S: 'static>(state: S) {
    SLOT.set(Some(Box::new(state)));
}

fn with<S: 'static, R>(f: impl FnOnce(&mut S) -> Result<R, String>) -> Result<R, String> {
    SLOT.with_borrow_mut(|slot| {
        let state = slot.as_mut().and_then(|s| s.downcast_mut::<S>());
        f(state.ok_or("the module is not initialized: `init` comes first")?)
    })
}

/// The glue the `export_*!` macros call; not for authors.
#[doc(hidden)]
pub mod glue {
    use super::*;

    struct OperatorSubtask<T: Operator> {
        operator: T,
        keyed: Keyed<T::Value>,
    }

    fn restore_of(state: &mut Restored, origin: StateOrigin) -> Restore {
        Restore {
            parallelism: state.parallelism,
            states: std::mem::take(&mut state.operator_states),
            origin,
        }
    }

    fn snapshot_of(operator_state: Vec<u8>, groups: Vec<(u32, bool, Vec<u8>)>) -> Snapshot {
        let key_groups = groups.into_iter();
        let key_groups = key_groups.map(|(key_group, delta, state)| KeyGroupState {
            key_group,
            delta,
            state,
        });
        Snapshot {
            operator_state,
            key_groups: key_groups.collect(),
        }
    }

    pub fn operator_init<T: Operator>(ctx: Context) -> Result<(), String> {
        let keyed = Keyed::new(ctx.key_group_start..ctx.key_group_end);
        let operator = T::init(&ctx)?;
        put(OperatorSubtask::<T> { operator, keyed });
        Ok(())
    }

    pub fn operator_process<T: Operator>(input: Batch) -> Result<Batch, String> {
        with(|s: &mut OperatorSubtask<T>| {
            let records = records(&input)?;
            if T::STATE != NO_KEYED_STATE && !records.keyed() && records.len() > 0 {
                return Err(
                    "this operator keeps keyed state, but its input does not come over \
                            a key-by edge (records carry no key group)"
                        .to_owned(),
                );
            }
            let range = s.keyed.range();
            if let Some(g) = records.key_groups().iter().find(|g| !range.contains(g)) {
                return Err(format!(
                    "a record of key group {g}, not one of this subtask's {range:?}"
                ));
            }
            let mut output = BatchBuilder::new();
            s.operator.process(records, &mut s.keyed, &mut output)?;
            Ok(output.into())
        })
    }

    /// `init` of a [`TimedOperator`](crate::TimedOperator): in a component, this subtask's
    /// timers are the host's from now on (natively, the ones a test installed stay).
    pub fn timed_operator_init<T: crate::TimedOperator>(ctx: Context) -> Result<(), String> {
        if cfg!(target_family = "wasm") {
            crate::time::install(std::rc::Rc::new(crate::time::HostTimers));
        }
        operator_init::<T>(ctx)
    }

    pub fn operator_on_timer<T: crate::TimedOperator>(
        domain: crate::TimeDomain,
        fired: Batch,
    ) -> Result<Batch, String> {
        with(|s: &mut OperatorSubtask<T>| {
            let fired = records(&fired)?;
            if !fired.keyed() {
                return Err("timers fired without their key groups".to_owned());
            }
            let range = s.keyed.range();
            if let Some(g) = fired.key_groups().iter().find(|g| !range.contains(g)) {
                return Err(format!(
                    "a timer of key group {g}, not one of this subtask's {range:?}"
                ));
            }
            let mut output = BatchBuilder::new();
            s.operator
                .on_timer(domain, fired, &mut s.keyed, &mut output)?;
            Ok(output.into())
        })
    }

    pub fn operator_snapshot<T: Operator>(checkpoint: u64, full: bool) -> Result<Snapshot, String> {
        with(|s: &mut OperatorSubtask<T>| {
            let operator_state = s.operator.snapshot(checkpoint)?;
            let groups = s.keyed.snapshot(T::STATE, full)?;
            Ok(snapshot_of(operator_state, groups))
        })
    }

    pub fn operator_restore<T: Operator>(
        state: Restored,
        origin: StateOrigin,
    ) -> Result<(), String> {
        operator_load::<T>(state, origin, Load::Restore)
    }

    pub fn operator_restore_changes<T: Operator>(
        changes: Restored,
        origin: StateOrigin,
    ) -> Result<(), String> {
        operator_load::<T>(changes, origin, Load::Changes)
    }

    /// `restore` (into empty groups) or `restore-changes` (on top of what `restore` loaded: a
    /// group given whole replaces the group).
    fn operator_load<T: Operator>(
        mut state: Restored,
        origin: StateOrigin,
        load: Load,
    ) -> Result<(), String> {
        with(|s: &mut OperatorSubtask<T>| {
            s.operator.restore(restore_of(&mut state, origin))?;
            for group in state.key_groups {
                let group = (group.key_group, group.delta, &group.state[..]);
                s.keyed.restore_group(group, load, T::STATE, T::migrate)?;
            }
            Ok(())
        })
    }

    struct SourceSubtask<T> {
        source: T,
        ended: bool,
    }

    pub fn source_init<T: Source>(ctx: Context) -> Result<(), String> {
        put(SourceSubtask {
            source: T::init(&ctx)?,
            ended: false,
        });
        Ok(())
    }

    pub fn source_poll<T: Source>(max_records: u32) -> Result<PollResult, String> {
        with(|s: &mut SourceSubtask<T>| {
            if s.ended {
                return Ok(PollResult::End);
            }
            let mut output = BatchBuilder::new();
            s.ended = !s.source.poll(max_records, &mut output)?;
            Ok(match (s.ended, output.is_empty()) {
                (true, true) => PollResult::End,
                _ => PollResult::Records(output.into()),
            })
        })
    }

    pub fn source_snapshot<T: Source>(checkpoint: u64) -> Result<Snapshot, String> {
        with(|s: &mut SourceSubtask<T>| Ok(snapshot_of(s.source.snapshot(checkpoint)?, vec![])))
    }

    pub fn source_restore<T: Source>(
        mut state: Restored,
        origin: StateOrigin,
    ) -> Result<(), String> {
        with(|s: &mut SourceSubtask<T>| s.source.restore(restore_of(&mut state, origin)))
    }

    pub fn sink_init<T: Sink>(ctx: Context) -> Result<(), String> {
        put(T::init(&ctx)?);
        Ok(())
    }

    pub fn sink_write<T: Sink>(input: Batch) -> Result<(), String> {
        with(|s: &mut T| s.write(records(&input)?))
    }

    pub fn sink<T: Sink>(call: impl FnOnce(&mut T) -> Result<(), String>) -> Result<(), String> {
        with(call)
    }

    pub fn sink_snapshot<T: Sink>(checkpoint: u64) -> Result<Snapshot, String> {
        with(|s: &mut T| Ok(snapshot_of(s.snapshot(checkpoint)?, vec![])))
    }

    pub fn sink_restore<T: Sink>(mut state: Restored, origin: StateOrigin) -> Result<(), String> {
        with(|s: &mut T| s.restore(restore_of(&mut state, origin)))
    }
}

/// Exports `$t`, an [`Operator`], as the component's `live-operator` world (the `operator`
/// world, and `restore-changes` for a live swap).
#[macro_export]
macro_rules! export_operator {
    ($t:ty) => {
        $crate::__export_operator_world!(
            $t,
            __JobhostOperator,
            live_operator,
            export_live_operator_world,
            operator_init,
            {}
        );
    };
}

/// The `Guest` implementations an operator's world (`$world`, of [`crate::bindings`]) asks of
/// `$t`, on struct `$s`, and its export by macro `$export`: the `operator` functions, `init`
/// through `glue::$init`, the functions in `{ $extra }` beside them, and `catch-up`'s
/// `restore-changes`. Shared by [`export_operator!`] and `export_timed_operator!`.
#[doc(hidden)]
#[macro_export]
macro_rules! __export_operator_world {
    ($t:ty, $s:ident, $world:ident, $export:ident, $init:ident, { $($extra:tt)* }) => {
        #[doc(hidden)]
        pub struct $s;
        impl $crate::bindings::$world::Guest for $s {
            fn describe() -> $crate::ModuleInfo {
                <$t as $crate::Operator>::describe()
            }
            fn init(ctx: $crate::Context) -> Result<(), String> {
                $crate::glue::$init::<$t>(ctx)
            }
            fn snapshot(checkpoint: u64, full: bool) -> Result<$crate::Snapshot, String> {
                $crate::glue::operator_snapshot::<$t>(checkpoint, full)
            }
            fn restore(state: $crate::Restored, origin: $crate::StateOrigin) -> Result<(), String> {
                $crate::glue::operator_restore::<$t>(state, origin)
            }
            fn process(input: $crate::Batch) -> Result<$crate::Batch, String> {
                $crate::glue::operator_process::<$t>(input)
            }
            $($extra)*
        }
        impl $crate::bindings::$world::exports::jobhost::operator::catch_up::Guest for $s {
            fn restore_changes(
                changes: $crate::Restored,
                origin: $crate::StateOrigin,
            ) -> Result<(), String> {
                $crate::glue::operator_restore_changes::<$t>(changes, origin)
            }
        }
        // Only a component exports it: natively, `catch-up`'s symbols (named
        // `jobhost:operator/catch-up@…#restore-changes`) cannot go into a shared library's
        // version script, and a native build (`cargo test` of a `cdylib`) needs none.
        #[cfg(target_family = "wasm")]
        $crate::bindings::$world::$export!($s with_types_in $crate::bindings::$world);
    };
}

/// Exports `$t`, a [`Source`], as the component's `source` world.
#[macro_export]
macro_rules! export_source {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __JobhostSource;
        impl $crate::bindings::source::Guest for __JobhostSource {
            fn describe() -> $crate::ModuleInfo {
                <$t as $crate::Source>::describe()
            }
            fn init(ctx: $crate::Context) -> Result<(), String> {
                $crate::glue::source_init::<$t>(ctx)
            }
            fn snapshot(checkpoint: u64, _full: bool) -> Result<$crate::Snapshot, String> {
                $crate::glue::source_snapshot::<$t>(checkpoint)
            }
            fn restore(state: $crate::Restored, origin: $crate::StateOrigin) -> Result<(), String> {
                $crate::glue::source_restore::<$t>(state, origin)
            }
            fn poll_batch(max_records: u32) -> Result<$crate::PollResult, String> {
                $crate::glue::source_poll::<$t>(max_records)
            }
        }
        $crate::bindings::source::export_source_world!(
            __JobhostSource with_types_in $crate::bindings::source
        );
    };
}

/// Exports `$t`, a [`Sink`], as the component's `sink` world.
#[macro_export]
macro_rules! export_sink {
    ($t:ty) => {
        #[doc(hidden)]
        pub struct __JobhostSink;
        impl $crate::bindings::sink::Guest for __JobhostSink {
            fn describe() -> $crate::ModuleInfo {
                <$t as $crate::Sink>::describe()
            }
            fn init(ctx: $crate::Context) -> Result<(), String> {
                $crate::glue::sink_init::<$t>(ctx)
            }
            fn snapshot(checkpoint: u64, _full: bool) -> Result<$crate::Snapshot, String> {
                $crate::glue::sink_snapshot::<$t>(checkpoint)
            }
            fn restore(state: $crate::Restored, origin: $crate::StateOrigin) -> Result<(), String> {
                $crate::glue::sink_restore::<$t>(state, origin)
            }
            fn write_batch(input: $crate::Batch) -> Result<(), String> {
                $crate::glue::sink_write::<$t>(input)
            }
            fn prepare_commit(checkpoint: u64) -> Result<(), String> {
                $crate::glue::sink::<$t>(|s| <$t as $crate::Sink>::prepare_commit(s, checkpoint))
            }
            fn commit(checkpoint: u64) -> Result<(), String> {
                $crate::glue::sink::<$t>(|s| <$t as $crate::Sink>::commit(s, checkpoint))
            }
            fn recover(checkpoint: u64) -> Result<(), String> {
                $crate::glue::sink::<$t>(|s| <$t as $crate::Sink>::recover(s, checkpoint))
            }
        }
        $crate::bindings::sink::export_sink_world!(__JobhostSink with_types_in $crate::bindings::sink);
    };
}
