//! Which windows a record's timestamp falls in.

use smallvec::SmallVec;

use super::Window;

/// A record's windows: one, or a few for sliding windows.
pub(super) type Assigned = SmallVec<[Window; 2]>;

/// How records are put in windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assigner {
    /// Windows of `size` ms, one after the other.
    Tumbling {
        /// Each window's length.
        size: i64,
    },
    /// Windows of `size` ms, one starting every `slide` ms.
    Sliding {
        /// Each window's length.
        size: i64,
        /// Between two windows' starts.
        slide: i64,
    },
    /// Sessions: a record's window is `[t, t + gap)`, merged with those it touches.
    Session {
        /// How long a session lasts after its last record.
        gap: i64,
    },
}

impl Assigner {
    /// Whether its lengths make windows; an error names the one that does not.
    pub(super) fn check(self) -> Result<(), String> {
        let positive = |what: &str, ms: i64| match ms > 0 {
            true => Ok(()),
            false => Err(format!(
                "the {what} of a window is {ms} ms: it must be positive"
            )),
        };
        match self {
            Assigner::Tumbling { size } => positive("size", size),
            Assigner::Sliding { size, slide } => {
                positive("size", size)?;
                positive("slide", slide)
            }
            Assigner::Session { gap } => positive("session gap", gap),
        }
    }

    /// The windows of a record at `t`, by start; for a session, its own, before merging.
    pub(super) fn assign(self, t: i64) -> Result<Assigned, String> {
        let out_of_range =
            || format!("timestamp {t} has no window: it is too close to the end of time");
        let window = |start: i64, size: i64| {
            let end = start.checked_add(size).ok_or_else(out_of_range)?;
            Ok::<_, String>(Window { start, end })
        };
        let mut assigned = Assigned::new();
        match self {
            Assigner::Tumbling { size } => assigned.push(window(t - t.rem_euclid(size), size)?),
            Assigner::Sliding { size, slide } => {
                let last = t - t.rem_euclid(slide);
                let mut start = last;
                // Every start in (t - size, t], a multiple of `slide`.
                while start > t.saturating_sub(size) {
                    assigned.insert(0, window(start, size)?);
                    match start.checked_sub(slide) {
                        Some(earlier) => start = earlier,
                        None => break,
                    }
                }
            }
            Assigner::Session { gap } => assigned.push(window(t, gap)?),
        }
        Ok(assigned)
    }
}
