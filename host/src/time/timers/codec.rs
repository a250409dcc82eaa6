//! How a key group's timers are written: the host's own format, beside the guest's keyed
//! state of the group and never inside it (`docs/time.md`).
//!
//! A piece is one format byte ([`TIMERS_FORMAT`]), then postcard: a whole group is the list
//! of its timers, each `(domain, timestamp, key)` (domain 0 event time, 1 processing time;
//! the timestamp a zigzag varint; the key as bytes), in order; a delta is two such lists, the
//! timers added and the timers removed since the group's previous piece. A group's chain is
//! its whole piece, then its deltas, applied in order (removed first, then added).

use std::collections::BTreeSet;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{Change, Timer};
use crate::time::Domain;

/// The format of the pieces this host writes, their first byte.
pub const TIMERS_FORMAT: u8 = 1;

/// One timer as written.
#[derive(Serialize, Deserialize)]
struct Written<'a>(u8, i64, #[serde(borrow, with = "serde_bytes")] &'a [u8]);

impl<'a> Written<'a> {
    fn of(timer: &'a Timer) -> Self {
        let domain = match timer.domain {
            Domain::Event => 0,
            Domain::Processing => 1,
        };
        Written(domain, timer.timestamp, &timer.key)
    }

    fn read(&self) -> Result<Timer, String> {
        let domain = match self.0 {
            0 => Domain::Event,
            1 => Domain::Processing,
            other => return Err(format!("a timer of unknown domain {other}")),
        };
        Ok(Timer {
            domain,
            timestamp: self.1,
            key: Bytes::copy_from_slice(self.2),
        })
    }
}

/// A delta as written: the timers added, then those removed.
#[derive(Serialize, Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    added: Vec<Written<'a>>,
    #[serde(borrow)]
    removed: Vec<Written<'a>>,
}

fn encode(value: &impl Serialize) -> Vec<u8> {
    let mut bytes = vec![TIMERS_FORMAT];
    postcard::to_io(value, &mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

/// A group's timers, whole.
pub fn whole(timers: &BTreeSet<Timer>) -> Vec<u8> {
    let written: Vec<Written<'_>> = timers.iter().map(Written::of).collect();
    encode(&written)
}

/// A change to a group's timers, as a delta.
pub fn delta(change: &Change) -> Vec<u8> {
    encode(&Delta {
        added: change.added.iter().map(Written::of).collect(),
        removed: change.removed.iter().map(Written::of).collect(),
    })
}

/// The body of a piece, after its format byte.
fn body(piece: &[u8]) -> Result<&[u8], String> {
    match piece.split_first() {
        Some((&TIMERS_FORMAT, body)) => Ok(body),
        Some((format, _)) => Err(format!(
            "written in timer format {format}, which this host does not know (it reads \
             format {TIMERS_FORMAT})"
        )),
        None => Err("an empty piece".to_owned()),
    }
}

fn decode<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, String> {
    postcard::from_bytes(body).map_err(|e| format!("a piece does not decode: {e}"))
}

/// The timers of a group's chain: its whole piece, then its deltas in order.
pub fn read_chain(pieces: &[&[u8]]) -> Result<BTreeSet<Timer>, String> {
    let Some((first, deltas)) = pieces.split_first() else {
        return Ok(BTreeSet::new());
    };
    let whole: Vec<Written<'_>> = decode(body(first)?)?;
    let mut timers: BTreeSet<Timer> = whole.iter().map(Written::read).collect::<Result<_, _>>()?;
    for piece in deltas {
        let delta: Delta<'_> = decode(body(piece)?)?;
        for removed in &delta.removed {
            timers.remove(&removed.read()?);
        }
        for added in &delta.added {
            timers.insert(added.read()?);
        }
    }
    Ok(timers)
}
