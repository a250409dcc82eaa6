//! A subtask's state file, and the segment files its keyed state lives in (format 4).
//!
//! A checkpoint writes, per subtask, one segment holding the pieces of keyed state (a key
//! group whole, or a delta, [`crate::snapshot::Piece`]) written since the subtask's previous
//! checkpoint, and one small state file: its operator state, and which entries of which
//! segments hold its keyed state now. Pieces written earlier stay in the segments of earlier
//! points, which the new point hard-links. So a checkpoint writes what changed (the state file
//! grows with the segments it names, never with the pieces), every point folder is still
//! self-contained (copy it anywhere and it resumes), unchanged bytes are stored once however
//! many checkpoints and savepoints hold them, and retention and `rm` need no reference counts
//! of their own: the file system keeps them.
//!
//! A segment is its pieces, then its table (one entry per piece: key group, whether a delta,
//! offset, length, checksum), then the table's length and the checksum of everything before
//! it. A segment that cannot be linked (its point was removed, or its checkpoint aborted) is
//! written again from the pieces still held, at the same offsets and entries, the others left
//! as zeros and blank entries. The state file's checksum is in `_metadata`; every segment a
//! state file names is verified whole (a byte changed anywhere in a point is refused, even in
//! a piece no longer held) before any module sees a byte. Encoding only: the store does the
//! I/O.
//!
//! Format 4 keeps the host's own state beside the guest's, never inside its bytes: the pieces
//! of each key group's timers (chained as keyed state is, [`crate::time::timers::codec`]) go
//! into the same segments, told apart by a second bitmap per segment, and a source's
//! watermark is a field of the state file. Format 3 (no timers, no watermark) still reads.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;

use serde::{Deserialize, Serialize};

use crate::checksum::{checksum, checksum_of_parts};
use crate::snapshot::{Held, Home, Piece};

/// A state file: postcard of this.
#[derive(Serialize, Deserialize)]
struct Index<'a> {
    /// State not split by key. Written as bytes (postcard: its length, then the bytes), which
    /// is what serde's default for a slice writes too, byte by byte as a sequence (a quarter of
    /// `host stop --save` at 100 MiB of operator state).
    #[serde(borrow, with = "serde_bytes")]
    operator_state: &'a [u8],
    /// Sources: the last watermark sent.
    watermark: Option<i64>,
    /// The segments holding the keyed state and the timers, in the order they were written
    /// (each with the number of the checkpoint that wrote it), each with the entries of its
    /// table that the state holds: a bit per entry (least significant first) for the guest's
    /// keyed state, and another for the timers.
    #[serde(borrow)]
    segments: Vec<(&'a str, u64, &'a [u8], &'a [u8])>,
}

/// A format 3 state file: format 4 without the watermark, and without timers.
#[derive(Serialize, Deserialize)]
struct Index3<'a> {
    #[serde(borrow, with = "serde_bytes")]
    operator_state: &'a [u8],
    #[serde(borrow)]
    segments: Vec<(&'a str, u64, &'a [u8])>,
}

/// One entry of a segment's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key group.
    pub group: u32,
    /// Whether the piece is a delta (else the group whole).
    pub delta: bool,
    /// Where it starts in the segment.
    pub offset: u64,
    /// Its length.
    pub len: u64,
    /// Its checksum.
    pub checksum: [u8; 16],
}

/// An entry whose piece the segment no longer holds (written again without it).
const BLANK: Entry = Entry {
    group: u32::MAX,
    delta: false,
    offset: 0,
    len: 0,
    checksum: [0; 16],
};

/// The bytes after a segment's table: its length (u32 LE), and the checksum of the segment
/// up to here.
pub const TRAILER_LEN: usize = 4 + 16;

/// A format 2 state file: each key group whole, inline.
#[derive(Deserialize)]
struct Grouped<'a> {
    #[serde(borrow)]
    operator_state: &'a [u8],
    #[serde(borrow)]
    key_groups: Vec<(u32, &'a [u8])>,
}

/// The pieces of one segment that a state holds, by entry.
pub type Pieces<'a> = BTreeMap<u32, (Entry, &'a [u8])>;

/// A subtask's state, ready to write.
pub struct Encoded<'a> {
    /// The state file's bytes.
    pub state_file: StateFileBytes,
    /// Every segment the state file names, with the pieces of it the state holds.
    pub segments: BTreeMap<&'a str, Pieces<'a>>,
}

/// Encodes `held`, every piece of which has a home ([`Held::home_new_pieces`]).
pub fn encode(held: &Held) -> Encoded<'_> {
    let mut segments: BTreeMap<&str, Pieces<'_>> = BTreeMap::new();
    // Per segment, the entries of timers (the others are the guest's).
    let mut timers: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    let mut order: Vec<(u64, &str)> = Vec::new();
    let chains = held.key_groups.iter().map(|c| (c, false));
    for ((&group, chain), timed) in chains.chain(held.timers.iter().map(|c| (c, true))) {
        for (i, piece) in chain.iter().enumerate() {
            let home = piece
                .home
                .as_ref()
                .expect("every piece is homed before a write");
            let entries = segments.entry(&home.segment).or_insert_with(|| {
                order.push((home.sequence, &home.segment));
                BTreeMap::new()
            });
            let entry = Entry {
                group,
                delta: i > 0,
                offset: home.offset,
                len: piece.bytes.len() as u64,
                checksum: home.checksum,
            };
            entries.insert(home.entry, (entry, &piece.bytes[..]));
            if timed {
                timers.entry(&home.segment).or_default().push(home.entry);
            }
        }
    }
    order.sort();
    let bitmaps: Vec<(Vec<u8>, Vec<u8>)> = order
        .iter()
        .map(|(_, name)| {
            let timed = timers.get(name).map_or(&[][..], Vec::as_slice);
            let keyed = segments[name].keys().filter(|e| !timed.contains(e));
            (bitmap(keyed.copied()), bitmap(timed.iter().copied()))
        })
        .collect();
    let named: Vec<(&str, u64, &[u8], &[u8])> = order
        .iter()
        .zip(&bitmaps)
        .map(|(&(sequence, name), (keyed, timed))| (name, sequence, &keyed[..], &timed[..]))
        .collect();
    Encoded {
        state_file: StateFileBytes::new(&held.operator_state, held.watermark, &named),
        segments,
    }
}

/// A state file's bytes, postcard of [`Index`], in three parts: the operator state's length,
/// the operator state itself (shared with the state held, not copied: at 100 MiB the copy
/// into one buffer, and freeing it, were about a sixth of `host stop --save`), and the
/// segments.
pub struct StateFileBytes {
    head: Vec<u8>,
    operator_state: Bytes,
    tail: Vec<u8>,
}

impl StateFileBytes {
    fn new(
        operator_state: &Bytes,
        watermark: Option<i64>,
        segments: &[(&str, u64, &[u8], &[u8])],
    ) -> Self {
        // Postcard writes bytes as their length (a varint) then the bytes, and a struct as its
        // fields in order: the parts are `Index`'s encoding, as a test checks.
        let len = operator_state.len() as u64;
        let encode =
            |bytes: postcard::Result<Vec<u8>>| bytes.expect("encoding to a Vec cannot fail");
        Self {
            head: encode(postcard::to_stdvec(&len)),
            operator_state: operator_state.clone(),
            tail: encode(postcard::to_stdvec(&(watermark, segments))),
        }
    }

    /// The parts, in order.
    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.head, &self.operator_state, &self.tail]
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.parts().iter().map(|part| part.len()).sum()
    }

    /// Whether it has no bytes (never: a state file has at least its two lengths).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The checksum of the whole, as [`checksum`] of its bytes in one piece gives it.
    pub fn checksum(&self) -> [u8; 16] {
        checksum_of_parts(&self.parts())
    }

    /// The bytes in one piece (a copy).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// A bit per entry of a segment's table, set for `entries` (in increasing order).
fn bitmap(entries: impl Iterator<Item = u32> + Clone) -> Vec<u8> {
    let last = entries.clone().max().unwrap_or(0);
    let mut bits = vec![0u8; last as usize / 8 + 1];
    for entry in entries {
        bits[entry as usize / 8] |= 1 << (entry % 8);
    }
    bits
}

/// The bytes of a segment holding `pieces` at their offsets and entries, then its table (with
/// blank entries, and zeros between pieces, for those no longer held).
pub fn segment_bytes<'p>(pieces: &Pieces<'p>) -> SegmentBytes<'p> {
    let entries = pieces.keys().next_back().map_or(0, |&last| last + 1);
    let mut table = vec![BLANK; entries as usize];
    let mut by_offset: Vec<(Entry, &[u8])> = Vec::with_capacity(pieces.len());
    for (&i, &(entry, piece)) in pieces {
        table[i as usize] = entry;
        by_offset.push((entry, piece));
    }
    by_offset.sort_unstable_by_key(|(entry, _)| entry.offset);
    let (mut parts, mut end) = (Vec::with_capacity(by_offset.len() + 3), 0);
    for (entry, piece) in by_offset {
        debug_assert!(entry.offset >= end, "pieces of a segment do not overlap");
        if entry.offset > end {
            parts.push(Cow::Owned(vec![0; (entry.offset - end) as usize]));
        }
        parts.push(Cow::Borrowed(piece));
        end = entry.offset + piece.len() as u64;
    }
    let table = postcard::to_stdvec(&table).expect("encoding to a Vec cannot fail");
    let table_len = (table.len() as u32).to_le_bytes().to_vec();
    parts.extend([Cow::Owned(table), Cow::Owned(table_len)]);
    let mut segment = SegmentBytes { parts };
    let sum = checksum_of_parts(&segment.parts());
    segment.parts.push(Cow::Owned(sum.to_vec()));
    segment
}

/// A segment's bytes, in parts: its pieces where the state held has them (not copied into one
/// buffer first: at 1 M keys that copy filled 10 MiB of fresh memory at every checkpoint, and
/// the write of `host stop --save` took about twice as long), zeros for pieces no longer held,
/// then its trailer.
pub struct SegmentBytes<'p> {
    parts: Vec<Cow<'p, [u8]>>,
}

impl SegmentBytes<'_> {
    /// The parts, in order.
    pub fn parts(&self) -> Vec<&[u8]> {
        self.parts.iter().map(|part| &part[..]).collect()
    }

    /// The bytes in one piece (a copy: an object store's body).
    pub fn to_vec(&self) -> Vec<u8> {
        self.parts().concat()
    }
}

/// The table of the segment `bytes`, the whole segment verified against its checksum and every
/// entry within its pieces.
pub fn open_segment(bytes: &[u8]) -> Result<Vec<Entry>, SegmentFault> {
    let short = || SegmentFault::ShorterThanItsTable;
    let summed = bytes.len().checked_sub(16).ok_or_else(short)?;
    if checksum(&bytes[..summed]) != bytes[summed..] {
        return Err(SegmentFault::Checksum);
    }
    let len_at = summed.checked_sub(4).ok_or_else(short)?;
    let table_len = u32::from_le_bytes(bytes[len_at..summed].try_into().expect("4 bytes"));
    let table_at = len_at.checked_sub(table_len as usize).ok_or_else(short)?;
    let table: Vec<Entry> =
        postcard::from_bytes(&bytes[table_at..len_at]).map_err(SegmentFault::Table)?;
    let outside = |e: &&Entry| {
        e.offset
            .checked_add(e.len)
            .is_none_or(|end| end > table_at as u64)
    };
    if let Some(entry) = table.iter().find(outside) {
        return Err(SegmentFault::EntryOutside(entry.group));
    }
    Ok(table)
}

/// A state file read back: its operator state, a source's watermark, and the segments and
/// entries of its keyed state and its timers.
#[derive(Debug)]
pub struct Decoded {
    operator_state: Bytes,
    watermark: Option<i64>,
    /// Each segment's name, sequence, and bitmaps of the guest's entries and the timers'.
    segments: Vec<(String, u64, Vec<u8>, Vec<u8>)>,
}

/// Why a state file, verified against its checksum, does not decode.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Its bytes are no state file.
    #[error("the state file does not decode: {0}")]
    Undecodable(#[from] postcard::Error),
    /// It names a file that is no segment (formats 3 and 4).
    #[error("the state file names `{0}`, which is no segment file")]
    NoSegment(String),
    /// It holds a key group twice (format 2).
    #[error("the state file holds key group {0} twice")]
    GroupTwice(u32),
}

/// Reads a state file written by [`encode`] (format 4). Segment names are checked: plain file
/// names. The operator state is a slice of `bytes`, not a copy.
pub fn decode(bytes: &Bytes) -> Result<Decoded, StateFileError> {
    let index: Index<'_> = postcard::from_bytes(bytes)?;
    decoded(bytes, index.operator_state, index.watermark, index.segments)
}

/// Reads a state file of format 3: keyed state only, no timers, no watermark.
pub fn decode_format_3(bytes: &Bytes) -> Result<Decoded, StateFileError> {
    let index: Index3<'_> = postcard::from_bytes(bytes)?;
    let segments = index.segments.into_iter();
    let segments = segments.map(|(n, sequence, keyed)| (n, sequence, keyed, &[][..]));
    decoded(bytes, index.operator_state, None, segments.collect())
}

/// A state file read back from its parts, its segment names checked.
fn decoded(
    bytes: &Bytes,
    operator_state: &[u8],
    watermark: Option<i64>,
    segments: Vec<(&str, u64, &[u8], &[u8])>,
) -> Result<Decoded, StateFileError> {
    if let Some((bad, ..)) = segments.iter().find(|(n, ..)| !is_segment_name(n)) {
        return Err(StateFileError::NoSegment((*bad).to_owned()));
    }
    let segments = segments.into_iter().map(|(n, sequence, keyed, timed)| {
        (n.to_owned(), sequence, keyed.to_vec(), timed.to_vec())
    });
    Ok(Decoded {
        operator_state: bytes.slice_ref(operator_state),
        watermark,
        segments: segments.collect(),
    })
}

/// A segment that cannot give what a state file says it holds.
#[derive(Debug, thiserror::Error)]
#[error("segment {segment}: {fault}")]
pub struct SegmentError {
    /// The segment's file name.
    pub segment: String,
    /// What is wrong.
    pub fault: SegmentFault,
}

/// What is wrong with a segment.
#[derive(Debug, thiserror::Error)]
pub enum SegmentFault {
    /// Its file cannot be read.
    #[error("{0}")]
    Unreadable(std::io::Error),
    /// Its object cannot be read.
    #[error("{0}")]
    Unfetched(Box<super::StoreError>),
    /// It is longer than any segment is.
    #[error("{len} bytes: larger than any segment ({max} bytes at most)")]
    TooLarge {
        /// Its length.
        len: u64,
        /// The longest a segment may be.
        max: u64,
    },
    /// Its bytes end before its table does.
    #[error("shorter than its table")]
    ShorterThanItsTable,
    /// Its trailer's checksum is not that of its bytes.
    #[error("the segment does not match its checksum")]
    Checksum,
    /// Its table does not decode.
    #[error("the segment's table does not decode: {0}")]
    Table(postcard::Error),
    /// An entry of this key group points past the pieces.
    #[error("an entry of key group {0} lies outside the segment's pieces")]
    EntryOutside(u32),
    /// A chain that starts with a delta, or an empty piece.
    #[error("entry {entry} (key group {group}) is out of order")]
    OutOfOrder {
        /// The entry's index in the table.
        entry: usize,
        /// Its key group.
        group: u32,
    },
    /// A piece that does not match its entry's checksum.
    #[error("checksum mismatch at offset {0}")]
    PieceChecksum(u64),
}

/// Where a decoded state's segments are read from: each whole, by name.
pub trait Segments {
    /// The bytes of segment `name` (a plain file name, checked by [`decode`]).
    fn bytes(&mut self, name: &str) -> Result<&Bytes, SegmentError>;
}

impl Decoded {
    /// The names of the segments it names, in the order written.
    pub fn segment_names(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().map(|(name, ..)| name.as_str())
    }

    /// The state, its pieces read from `segments`, each key group's chain checked: one whole
    /// piece, then deltas, in the order written. Errors name the segment at fault.
    ///
    /// A piece is a slice of its segment as read, not a copy, while the segment is at least
    /// half pieces the state holds: a slice keeps the whole segment in memory, and the pieces
    /// an older checkpoint wrote there may since have been written again.
    pub fn load(self, segments: &mut (impl Segments + ?Sized)) -> Result<Held, SegmentError> {
        let (mut key_groups, mut timers) = (BTreeMap::new(), BTreeMap::new());
        for (name, sequence, keyed, timed) in &self.segments {
            let at_fault = |fault| SegmentError {
                segment: name.clone(),
                fault,
            };
            let bytes = segments.bytes(name)?;
            let table = open_segment(bytes).map_err(at_fault)?;
            let segment: Arc<str> = name.as_str().into();
            let held = |i: usize| is_held(keyed, i) || is_held(timed, i);
            let held_len: u64 = (table.iter().enumerate())
                .filter(|&(i, _)| held(i))
                .map(|(_, e)| e.len)
                .sum();
            let shared = held_len * 2 >= bytes.len() as u64;
            for (i, entry) in table.iter().enumerate() {
                let chains: &mut BTreeMap<u32, Vec<Piece>> = match () {
                    _ if is_held(keyed, i) => &mut key_groups,
                    _ if is_held(timed, i) => &mut timers,
                    _ => continue,
                };
                let chain = chains.entry(entry.group).or_default();
                if entry.len == 0 || entry.delta == chain.is_empty() {
                    let (entry, group) = (i, entry.group);
                    return Err(at_fault(SegmentFault::OutOfOrder { entry, group }));
                }
                let piece = &bytes[entry.offset as usize..][..entry.len as usize];
                if checksum(piece) != entry.checksum {
                    return Err(at_fault(SegmentFault::PieceChecksum(entry.offset)));
                }
                chain.push(Piece {
                    bytes: match shared {
                        true => bytes.slice_ref(piece),
                        false => Bytes::copy_from_slice(piece),
                    },
                    home: Some(Home {
                        segment: segment.clone(),
                        sequence: *sequence,
                        entry: i as u32,
                        offset: entry.offset,
                        checksum: entry.checksum,
                    }),
                });
            }
        }
        Ok(Held {
            operator_state: self.operator_state,
            key_groups,
            timers,
            watermark: self.watermark,
        })
    }
}

/// Whether entry `i` of a segment is one the state holds, by the state file's bitmap.
fn is_held(bits: &[u8], i: usize) -> bool {
    bits.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0)
}

/// Reads a format 2 state file: each group whole, inline.
pub fn decode_grouped(bytes: &Bytes) -> Result<Held, StateFileError> {
    let file: Grouped<'_> = postcard::from_bytes(bytes)?;
    let mut key_groups = BTreeMap::new();
    for (group, state) in file.key_groups {
        if key_groups
            .insert(group, vec![Piece::new(bytes.slice_ref(state))])
            .is_some()
        {
            return Err(StateFileError::GroupTwice(group));
        }
    }
    Ok(Held {
        operator_state: bytes.slice_ref(file.operator_state),
        key_groups,
        ..Held::default()
    })
}

/// Whether `name` can be a segment file's: a plain name ending in `.seg`.
pub fn is_segment_name(name: &str) -> bool {
    name.ends_with(".seg") && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
