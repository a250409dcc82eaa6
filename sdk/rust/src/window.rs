//! Keyed windows over event time: tumbling, sliding and session windows, each with an
//! incremental [`Aggregate`], allowed lateness and late records counted (and, if asked, sent on
//! as a side output). The semantics are Flink's, and the same in the three SDKs:
//!
//! - A window is `[start, end)`. A record of timestamp `t` is in the tumbling windows of
//!   `size` starting at multiples of `size`; in the sliding windows of `size` starting at
//!   multiples of `slide` that hold `t`; in the session `[t, t + gap)`, merged with every
//!   session of its key it touches (sessions closer than or exactly `gap` apart are one).
//! - A window's result is emitted once, when the watermark reaches its last millisecond,
//!   `end - 1` (an event-time timer there). A record that arrives after that but within the
//!   allowed lateness updates the window, which is emitted again at once if its result changed.
//! - A window is late once the watermark reaches `end - 1 + allowed lateness`: its state is
//!   dropped then (a second timer), and a record whose every window is late is dropped and
//!   counted ([`Windows::late_records`]); with [`Windows::late_output`], it goes on downstream
//!   with its key prefixed by [`LATE_KEY_PREFIX`].
//!
//! Window state is keyed state (so it checkpoints, rescales and migrates as any): per key, its
//! open windows `[[start, end, acc, fired], ...]` by start, in the operator's state format
//! (`docs/state-format.md`, *Windows*), the bytes the Python and JavaScript SDKs write.
//!
//! An author implements [`WindowOperator`] and calls
//! [`export_window_operator!`](crate::export_window_operator); or keeps a [`Windows`] in a
//! [`TimedOperator`](crate::TimedOperator) of their own and calls its `process` and `on_timer`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::time::{TimeDomain, timers};
use crate::{BatchBuilder, Context, Keyed, ModuleInfo, OldEntries, Operator, Records, StateFormat};

pub use assign::Assigner;

/// What a late record's key starts with in the side output ([`Windows::late_output`]): byte
/// `0xff`, which no UTF-8 text holds, then `late:`. The rest is the record's key; its value
/// and timestamp are the record's.
pub const LATE_KEY_PREFIX: &[u8] = b"\xfflate:";

/// A window of event time, `[start, end)`, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Window {
    /// Its first millisecond.
    pub start: i64,
    /// The millisecond after its last.
    pub end: i64,
}

impl Window {
    /// Its last millisecond, `end - 1`: the timestamp of its result, and when it fires.
    pub fn max_timestamp(self) -> i64 {
        self.end - 1
    }
}

/// One open window of a key, as kept in keyed state: `[start, end, acc, fired]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Slot<A> {
    /// The window's first millisecond.
    pub start: i64,
    /// The millisecond after its last.
    pub end: i64,
    /// Its aggregate's accumulator.
    pub acc: A,
    /// Whether its result was emitted (the watermark reached its end).
    pub fired: bool,
}

impl<A> Slot<A> {
    /// Its window.
    pub fn window(&self) -> Window {
        Window {
            start: self.start,
            end: self.end,
        }
    }

    /// The same window with its accumulator converted (a migration).
    pub fn map<B>(self, convert: impl FnOnce(A) -> B) -> Slot<B> {
        Slot {
            start: self.start,
            end: self.end,
            acc: convert(self.acc),
            fired: self.fired,
        }
    }
}

/// A key's open windows, by start: the value a window operator keeps per key.
pub type Slots<A> = Vec<Slot<A>>;

/// Windows over event time, keyed, with an aggregate `A`: `Windows::tumbling(10_000)
/// .allowed_lateness(5_000).aggregate(count())`. `A` is `()` until [`Windows::aggregate`].
#[derive(Debug, Clone)]
pub struct Windows<A = ()> {
    assigner: Assigner,
    lateness: i64,
    late_output: bool,
    aggregate: A,
    late: u64,
}

impl Windows {
    fn of(assigner: Assigner) -> Self {
        Windows {
            assigner,
            lateness: 0,
            late_output: false,
            aggregate: (),
            late: 0,
        }
    }

    /// Tumbling windows of `size` ms: `[k * size, (k + 1) * size)`.
    pub fn tumbling(size: i64) -> Self {
        Self::of(Assigner::Tumbling { size })
    }

    /// Sliding windows of `size` ms, one starting every `slide` ms.
    pub fn sliding(size: i64, slide: i64) -> Self {
        Self::of(Assigner::Sliding { size, slide })
    }

    /// Session windows: a key's records less than or exactly `gap` ms apart are one session,
    /// which ends `gap` ms after its last record.
    pub fn session(gap: i64) -> Self {
        Self::of(Assigner::Session { gap })
    }
}

impl<A> Windows<A> {
    /// Keeps windows `lateness` ms after the watermark passed their end (0 by default): a
    /// record of theirs that arrives meanwhile updates them (and emits them again if changed).
    pub fn allowed_lateness(mut self, lateness: i64) -> Self {
        self.lateness = lateness;
        self
    }

    /// Sends records too late for any window on downstream, their key prefixed by
    /// [`LATE_KEY_PREFIX`], rather than dropping them (they are counted either way).
    pub fn late_output(mut self) -> Self {
        self.late_output = true;
        self
    }

    /// The aggregate computed per window ([`crate::aggregate`]).
    pub fn aggregate<B: Aggregate>(self, aggregate: B) -> Windows<B> {
        Windows {
            assigner: self.assigner,
            lateness: self.lateness,
            late_output: self.late_output,
            aggregate,
            late: self.late,
        }
    }

    /// The records dropped as too late for any window (or sent to the side output) since the
    /// subtask started.
    pub fn late_records(&self) -> u64 {
        self.late
    }

    /// Whether the windows are well defined; an error names what is not.
    pub fn check(&self) -> Result<(), String>
    where
        A: Aggregate,
    {
        self.assigner.check()?;
        if self.lateness < 0 {
            return Err(format!(
                "the allowed lateness is {} ms: it cannot be negative",
                self.lateness
            ));
        }
        if matches!(self.assigner, Assigner::Session { .. }) && !self.aggregate.merges() {
            return Err(
                "session windows merge their aggregates, and this one cannot merge: \
                        give the fold a merge"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// A window operator: the windows, their aggregate, and what a result becomes downstream; the
/// SDK does the rest. Export it with [`export_window_operator!`](crate::export_window_operator),
/// which exports [`Windowed<Self>`], a [`TimedOperator`](crate::TimedOperator).
pub trait WindowOperator: Sized + 'static {
    /// What each window computes.
    type Aggregate: Aggregate;
    /// The format and version of its state: the windows, and their accumulators' shape.
    const STATE: StateFormat;
    /// The module's name and version ([`module`](crate::module)).
    fn describe() -> ModuleInfo;
    /// The windows of a subtask, from its config if it likes.
    fn windows(ctx: &Context) -> Result<Windows<Self::Aggregate>, String>;
    /// Pushes the result `acc` of `key`'s `window` onto `output` (typically one record of key
    /// `key` at `window.max_timestamp()`).
    fn emit(
        key: &[u8],
        window: Window,
        acc: &<Self::Aggregate as Aggregate>::Acc,
        output: &mut BatchBuilder,
    ) -> Result<(), String>;
    /// The windows of a key group written in an older `version` of [`Self::STATE`]:
    /// `old.convert(|old_acc: Old| new_acc)` says what each old accumulator becomes. Refuses
    /// versions it does not read (by default, all).
    fn migrate(version: u32, _old: OldWindows<'_, Self::Aggregate>) -> Result<(), String> {
        Err(crate::envelope::unsupported(Self::STATE, version))
    }
}

/// The windows of a key group written in an older version, given to
/// [`WindowOperator::migrate`].
pub struct OldWindows<'a, A: Aggregate>(OldEntries<'a, Slots<A::Acc>>);

impl<A: Aggregate> OldWindows<'_, A> {
    /// Decodes each window's accumulator as an `Old` and keeps `convert(old)`, window by
    /// window (their bounds and whether they fired are kept).
    pub fn convert<Old: DeserializeOwned>(
        self,
        mut convert: impl FnMut(Old) -> A::Acc,
    ) -> Result<(), String> {
        self.0.convert(|_key, old: Slots<Old>| {
            old.into_iter().map(|slot| slot.map(&mut convert)).collect()
        })
    }
}

/// A [`WindowOperator`] as a [`TimedOperator`](crate::TimedOperator): what
/// [`export_window_operator!`](crate::export_window_operator) exports.
pub struct Windowed<W: WindowOperator> {
    windows: Windows<W::Aggregate>,
}

type Acc<W> = <<W as WindowOperator>::Aggregate as Aggregate>::Acc;

impl<W: WindowOperator> Operator for Windowed<W> {
    type Value = Slots<Acc<W>>;
    const STATE: StateFormat = W::STATE;

    fn describe() -> ModuleInfo {
        W::describe()
    }

    fn init(ctx: &Context) -> Result<Self, String> {
        let windows = W::windows(ctx)?;
        windows.check()?;
        Ok(Windowed { windows })
    }

    fn process(
        &mut self,
        input: Records<'_>,
        keyed: &mut Keyed<Self::Value>,
        output: &mut BatchBuilder,
    ) -> Result<(), String> {
        let mut emit = W::emit;
        self.windows
            .process(input, keyed, &timers(), output, &mut emit)
    }

    fn migrate(version: u32, old: OldEntries<'_, Self::Value>) -> Result<(), String> {
        W::migrate(version, OldWindows(old))
    }
}

impl<W: WindowOperator> crate::TimedOperator for Windowed<W> {
    fn on_timer(
        &mut self,
        domain: TimeDomain,
        fired: Records<'_>,
        keyed: &mut Keyed<Self::Value>,
        output: &mut BatchBuilder,
    ) -> Result<(), String> {
        let mut emit = W::emit;
        self.windows
            .on_timer(domain, fired, keyed, output, &mut emit)
    }
}

/// Exports `$t`, a [`WindowOperator`], as the component's `timed-operator` world.
#[macro_export]
macro_rules! export_window_operator {
    ($t:ty) => {
        $crate::export_timed_operator!($crate::window::Windowed<$t>);
    };
}

mod assign;
mod machine;
#[cfg(test)]
mod tests;
