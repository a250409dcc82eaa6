//! What windows do with records and fired timers (the semantics are in the module's docs).

use smallvec::SmallVec;

use super::{Assigner, LATE_KEY_PREFIX, Slot, Slots, Window, Windows};
use crate::aggregate::Aggregate;
use crate::time::{TimeDomain, TimerService};
use crate::{BatchBuilder, Keyed, Record, Records};

/// Writes a window's result downstream: `emit(key, window, acc, output)`.
pub trait Emit<Acc>: FnMut(&[u8], Window, &Acc, &mut BatchBuilder) -> Result<(), String> {}

impl<Acc, F: FnMut(&[u8], Window, &Acc, &mut BatchBuilder) -> Result<(), String>> Emit<Acc> for F {}

/// What one call works with: where results go, and how.
struct Out<'a, E> {
    timers: &'a dyn TimerService,
    output: &'a mut BatchBuilder,
    emit: &'a mut E,
}

impl<A: Aggregate> Windows<A> {
    /// Puts each record of `input` in its windows, in `keyed`: registers the timers of windows
    /// it opens, emits a window again that a record within the allowed lateness changed, and
    /// counts (or sends on) a record too late for any window.
    pub fn process(
        &mut self,
        input: Records<'_>,
        keyed: &mut Keyed<Slots<A::Acc>>,
        timers: &dyn TimerService,
        output: &mut BatchBuilder,
        emit: &mut impl Emit<A::Acc>,
    ) -> Result<(), String> {
        let watermark = timers.watermark();
        let mut out = Out {
            timers,
            output,
            emit,
        };
        for record in input {
            let mut windows = self.assigner.assign(record.timestamp)?;
            windows.retain(|w| !self.is_late(*w, watermark));
            match (windows.is_empty(), self.assigner) {
                (true, _) => self.late(&record, out.output)?,
                (false, Assigner::Session { .. }) => {
                    self.add_to_session(&record, windows[0], watermark, keyed, &mut out)?
                }
                (false, _) => {
                    let slots = keyed.or_insert_with(&record, Vec::new);
                    for window in windows {
                        self.add_to_window(&record, window, watermark, slots, &mut out)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Emits the windows whose end the fired event-time timers reached, once each, and drops
    /// those whose allowed lateness they passed. Processing-time timers are not windows'.
    pub fn on_timer(
        &mut self,
        domain: TimeDomain,
        fired: Records<'_>,
        keyed: &mut Keyed<Slots<A::Acc>>,
        output: &mut BatchBuilder,
        emit: &mut impl Emit<A::Acc>,
    ) -> Result<(), String> {
        if domain != TimeDomain::EventTime {
            return Ok(());
        }
        for timer in fired {
            let at = timer.timestamp;
            let due = |slot: &Slot<A::Acc>| !slot.fired && slot.window().max_timestamp() <= at;
            let gone = |slot: &Slot<A::Acc>| self.cleanup_time(slot.window()) <= at;
            let Some(slots) = keyed.get(&timer) else {
                continue;
            };
            if !slots.iter().any(|slot| due(slot) || gone(slot)) {
                continue;
            }
            let slots = keyed.get_mut(&timer).expect("just found");
            for slot in slots.iter_mut().filter(|slot| due(slot)) {
                emit(timer.key, slot.window(), &slot.acc, output)?;
                slot.fired = true;
            }
            slots.retain(|slot| !gone(slot));
            if slots.is_empty() {
                keyed.remove(&timer);
            }
        }
        Ok(())
    }

    /// When the window's state goes: the watermark reached its end - 1 + allowed lateness.
    fn cleanup_time(&self, window: Window) -> i64 {
        window.max_timestamp().saturating_add(self.lateness)
    }

    fn is_late(&self, window: Window, watermark: i64) -> bool {
        self.cleanup_time(window) <= watermark
    }

    /// A record too late for any window: counted, and sent on if asked.
    fn late(&mut self, record: &Record<'_>, output: &mut BatchBuilder) -> Result<(), String> {
        self.late += 1;
        if !self.late_output {
            return Ok(());
        }
        let mut key = Vec::with_capacity(LATE_KEY_PREFIX.len() + record.key.len());
        key.extend_from_slice(LATE_KEY_PREFIX);
        key.extend_from_slice(record.key);
        output.push(&key, record.value, record.timestamp)
    }

    /// Adds the record to `window` of its key's `slots`, opening it if it is not.
    fn add_to_window<E: Emit<A::Acc>>(
        &self,
        record: &Record<'_>,
        window: Window,
        watermark: i64,
        slots: &mut Slots<A::Acc>,
        out: &mut Out<'_, E>,
    ) -> Result<(), String> {
        let at = slots.partition_point(|slot| slot.window() < window);
        match slots.get_mut(at) {
            Some(slot) if slot.window() == window => self.update(record, slot, out),
            _ => {
                let mut acc = self.aggregate.create();
                self.aggregate.add(&mut acc, record)?;
                let slot = self.open(record.key, window, acc, watermark, out)?;
                slots.insert(at, slot);
                Ok(())
            }
        }
    }

    /// Adds the record to an open window: emitted again if it fired and its result changed.
    fn update<E: Emit<A::Acc>>(
        &self,
        record: &Record<'_>,
        slot: &mut Slot<A::Acc>,
        out: &mut Out<'_, E>,
    ) -> Result<(), String> {
        let before = slot.fired.then(|| slot.acc.clone());
        self.aggregate.add(&mut slot.acc, record)?;
        match before {
            Some(before) if before != slot.acc => {
                (out.emit)(record.key, slot.window(), &slot.acc, out.output)
            }
            _ => Ok(()),
        }
    }

    /// A window opened with `acc`: its timers registered, or, if the watermark already reached
    /// its end (a record within the allowed lateness), its result emitted at once.
    fn open<E: Emit<A::Acc>>(
        &self,
        key: &[u8],
        window: Window,
        acc: A::Acc,
        watermark: i64,
        out: &mut Out<'_, E>,
    ) -> Result<Slot<A::Acc>, String> {
        let fired = window.max_timestamp() <= watermark;
        if fired {
            (out.emit)(key, window, &acc, out.output)?;
        } else {
            let end = window.max_timestamp();
            out.timers.register(key, end, TimeDomain::EventTime)?;
        }
        if self.lateness > 0 {
            let cleanup = self.cleanup_time(window);
            out.timers.register(key, cleanup, TimeDomain::EventTime)?;
        }
        Ok(Slot {
            start: window.start,
            end: window.end,
            acc,
            fired,
        })
    }

    /// Adds the record to its key's sessions: `own` merged with every session it touches.
    fn add_to_session<E: Emit<A::Acc>>(
        &mut self,
        record: &Record<'_>,
        own: Window,
        watermark: i64,
        keyed: &mut Keyed<Slots<A::Acc>>,
        out: &mut Out<'_, E>,
    ) -> Result<(), String> {
        let (touched, merged) = match keyed.get(record) {
            Some(slots) => touching(slots, own),
            None => (0..0, own),
        };
        if self.is_late(merged, watermark) {
            return self.late(record, out.output);
        }
        let slots = keyed.or_insert_with(record, Vec::new);
        if touched.len() == 1 && slots[touched.start].window() == merged {
            return self.update(record, &mut slots[touched.start], out);
        }
        let at = touched.start;
        let mut merging = slots.drain(touched).map(|slot| (slot.window(), slot.acc));
        let mut acc = self.aggregate.create();
        let mut gone = SmallVec::<[Window; 2]>::new();
        for (window, old) in &mut merging {
            self.aggregate.merge(&mut acc, old)?;
            gone.extend((window != merged).then_some(window));
        }
        drop(merging);
        self.aggregate.add(&mut acc, record)?;
        let slot = self.open(record.key, merged, acc, watermark, out)?;
        slots.insert(at, slot);
        for window in gone {
            self.forget_timers(record.key, window, slots, out.timers);
        }
        Ok(())
    }

    /// Deletes the timers of a session merged away, but those another window of the key
    /// still needs.
    fn forget_timers(
        &self,
        key: &[u8],
        gone: Window,
        slots: &Slots<A::Acc>,
        timers: &dyn TimerService,
    ) {
        let needed = |at: i64| {
            let window = |slot: &Slot<A::Acc>| slot.window();
            let mut windows = slots.iter().map(window);
            windows.any(|w| w.max_timestamp() == at || self.cleanup_time(w) == at)
        };
        for at in [gone.max_timestamp(), self.cleanup_time(gone)] {
            if !needed(at) {
                timers.delete(key, at, TimeDomain::EventTime);
            }
        }
    }
}

/// The sessions of `slots` that `own` touches (a range: sessions do not touch each other), and
/// the session they make together.
fn touching<A>(slots: &Slots<A>, own: Window) -> (std::ops::Range<usize>, Window) {
    let start = slots.partition_point(|slot| slot.end < own.start);
    let end = start + slots[start..].partition_point(|slot| slot.start <= own.end);
    let merged = slots[start..end].iter().fold(own, |merged, slot| Window {
        start: merged.start.min(slot.start),
        end: merged.end.max(slot.end),
    });
    (start..end, merged)
}
