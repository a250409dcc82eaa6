//! A subtask's state file, and the segment files its keyed state lives in (format 3).
//!
//! A checkpoint writes, per subtask, one state file: its operator state, and where each piece
//! of its keyed state (a key group whole, or a delta, [`crate::snapshot::Piece`]) lives. The
//! pieces written since the subtask's previous checkpoint go into one new segment file; pieces
//! written earlier stay in the segments of earlier points, which the new point hard-links. So
//! a checkpoint writes what changed, every point folder is still self-contained (copy it
//! anywhere and it resumes), unchanged bytes are stored once however many checkpoints and
//! savepoints hold them, and retention and `rm` need no reference counts of their own: the
//! file system keeps them. A segment that cannot be linked (its point was removed, or its
//! checkpoint aborted) is written again from the pieces still held, at their offsets.
//!
//! Every piece carries its own checksum in the state file, which `_metadata` checksums: a
//! byte of a segment is verified before any module sees it. Encoding only: the store does the
//! I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::snapshot::{Held, Home, Piece};

/// A state file: postcard of this.
#[derive(Serialize, Deserialize)]
struct Index<'a> {
    /// State not split by key.
    #[serde(borrow)]
    operator_state: &'a [u8],
    /// The segment files the pieces live in.
    #[serde(borrow)]
    segments: Vec<&'a str>,
    /// Each key group's chain: whole, then deltas.
    key_groups: Vec<(u32, Vec<PieceRef>)>,
}

/// Where one piece lives.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct PieceRef {
    /// Index into `Index::segments`.
    segment: u32,
    offset: u64,
    len: u64,
    checksum: [u8; 16],
}

/// A format 2 state file: each key group whole, inline.
#[derive(Deserialize)]
struct Grouped<'a> {
    #[serde(borrow)]
    operator_state: &'a [u8],
    #[serde(borrow)]
    key_groups: Vec<(u32, &'a [u8])>,
}

/// One piece of a segment: its offset and bytes.
pub type Placed<'a> = (u64, &'a [u8]);

/// A subtask's state, ready to write: its state file, and the pieces it holds by segment.
pub struct Encoded<'a> {
    /// The state file's bytes.
    pub state_file: Vec<u8>,
    /// Every segment the state file names, with the pieces of it the state holds.
    pub segments: BTreeMap<&'a str, Vec<Placed<'a>>>,
}

/// Encodes `held`, every piece of which has a home ([`Held::home_new_pieces`]).
pub fn encode(held: &Held) -> Encoded<'_> {
    let mut segments: BTreeMap<&str, Vec<Placed<'_>>> = BTreeMap::new();
    let mut names: Vec<&str> = Vec::new();
    let mut numbers: BTreeMap<&str, u32> = BTreeMap::new();
    let mut key_groups = Vec::with_capacity(held.key_groups.len());
    for (&group, chain) in &held.key_groups {
        let mut refs = Vec::with_capacity(chain.len());
        for piece in chain {
            let home = piece
                .home
                .as_ref()
                .expect("every piece is homed before a write");
            let number = *numbers.entry(&home.segment).or_insert_with(|| {
                names.push(&home.segment);
                names.len() as u32 - 1
            });
            segments
                .entry(&home.segment)
                .or_default()
                .push((home.offset, &piece.bytes));
            refs.push(PieceRef {
                segment: number,
                offset: home.offset,
                len: piece.bytes.len() as u64,
                checksum: home.checksum,
            });
        }
        key_groups.push((group, refs));
    }
    let index = Index {
        operator_state: &held.operator_state,
        segments: names,
        key_groups,
    };
    let state_file = postcard::to_stdvec(&index).expect("encoding to a Vec cannot fail");
    Encoded {
        state_file,
        segments,
    }
}

/// The bytes of a segment holding `pieces` at their offsets; zeros between them stand for the
/// pieces no longer held (a segment written again).
pub fn segment_bytes(pieces: &[Placed<'_>]) -> Vec<u8> {
    let end = pieces.iter().map(|(o, b)| o + b.len() as u64).max();
    let mut bytes = vec![0; end.unwrap_or(0) as usize];
    for &(offset, piece) in pieces {
        bytes[offset as usize..][..piece.len()].copy_from_slice(piece);
    }
    bytes
}

/// A state file read back, its pieces still in their segments.
#[derive(Debug)]
pub struct Decoded {
    /// State not split by key.
    pub operator_state: Arc<[u8]>,
    /// The segment files, by the names the state file gives.
    pub segments: Vec<String>,
    /// Each key group's chain, where its pieces live.
    pub key_groups: Vec<(u32, Vec<Home>)>,
    /// Each piece's length, in chain order.
    lens: Vec<u64>,
}

/// Reads a state file written by [`encode`]. Segment names are checked: plain file names.
pub fn decode(bytes: &[u8]) -> Result<Decoded, String> {
    let index: Index<'_> =
        postcard::from_bytes(bytes).map_err(|e| format!("the state file does not decode: {e}"))?;
    if let Some(bad) = index.segments.iter().find(|n| !is_segment_name(n)) {
        return Err(format!(
            "the state file names `{bad}`, which is no segment file"
        ));
    }
    let names: Vec<Arc<str>> = index.segments.iter().map(|&n| n.into()).collect();
    let mut key_groups = Vec::with_capacity(index.key_groups.len());
    let mut lens = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (group, refs) in index.key_groups {
        if refs.is_empty() || !seen.insert(group) {
            return Err(format!(
                "the state file holds key group {group} twice or empty"
            ));
        }
        let mut chain = Vec::with_capacity(refs.len());
        for r in refs {
            let segment = names.get(r.segment as usize).ok_or_else(|| {
                format!(
                    "key group {group} names segment {}, of {}",
                    r.segment,
                    names.len()
                )
            })?;
            lens.push(r.len);
            chain.push(Home {
                segment: segment.clone(),
                offset: r.offset,
                checksum: r.checksum,
            });
        }
        key_groups.push((group, chain));
    }
    Ok(Decoded {
        operator_state: index.operator_state.into(),
        segments: index.segments.iter().map(|&n| n.to_owned()).collect(),
        key_groups,
        lens,
    })
}

impl Decoded {
    /// The state, each piece read by `read(home, len)` (which verifies it).
    pub fn load<E>(
        self,
        mut read: impl FnMut(&Home, u64) -> Result<Vec<u8>, E>,
    ) -> Result<Held, E> {
        let mut lens = self.lens.into_iter();
        let mut key_groups = BTreeMap::new();
        for (group, homes) in self.key_groups {
            let mut chain = Vec::with_capacity(homes.len());
            for home in homes {
                let len = lens.next().expect("one length per piece");
                let bytes = read(&home, len)?;
                chain.push(Piece {
                    bytes: bytes.into(),
                    home: Some(home),
                });
            }
            key_groups.insert(group, chain);
        }
        Ok(Held {
            operator_state: self.operator_state,
            key_groups,
        })
    }
}

/// Reads a format 2 state file: each group whole, inline.
pub fn decode_grouped(bytes: &[u8]) -> Result<Held, String> {
    let file: Grouped<'_> =
        postcard::from_bytes(bytes).map_err(|e| format!("the state file does not decode: {e}"))?;
    let mut key_groups = BTreeMap::new();
    for (group, state) in file.key_groups {
        if key_groups.insert(group, vec![Piece::new(state)]).is_some() {
            return Err(format!("the state file holds key group {group} twice"));
        }
    }
    Ok(Held {
        operator_state: file.operator_state.into(),
        key_groups,
    })
}

/// Whether `name` can be a segment file's: a plain name ending in `.seg`.
pub fn is_segment_name(name: &str) -> bool {
    name.ends_with(".seg") && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// State with these changes (`(group, delta, bytes)`) taken in, one snapshot each.
    fn held(changed: &[(u32, bool, &[u8])]) -> Held {
        let mut held = Held::default();
        for &(g, d, b) in changed {
            held.merge(b"position".to_vec(), vec![(g, d, b.to_vec())], false)
                .unwrap();
        }
        held
    }

    fn read_from(
        segments: &BTreeMap<String, Vec<u8>>,
    ) -> impl FnMut(&Home, u64) -> Result<Vec<u8>, String> + '_ {
        |home, len| {
            let bytes = &segments[&*home.segment][home.offset as usize..][..len as usize];
            if crate::store::metadata::checksum(bytes) != home.checksum {
                return Err("checksum".to_owned());
            }
            Ok(bytes.to_vec())
        }
    }

    #[test]
    fn a_state_file_round_trips_through_its_segments() {
        let mut state = held(&[(1, false, b"one"), (2, false, b"two"), (1, true, b"+1")]);
        state.home_new_pieces("a.seg");
        let encoded = encode(&state);
        let segments: BTreeMap<String, Vec<u8>> = encoded
            .segments
            .iter()
            .map(|(n, p)| (n.to_string(), segment_bytes(p)))
            .collect();
        assert_eq!(segments["a.seg"], b"one+1two");
        let back = decode(&encoded.state_file)
            .unwrap()
            .load(read_from(&segments))
            .unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn later_pieces_go_to_the_new_segment_and_earlier_ones_stay_where_they_are() {
        let mut state = held(&[(1, false, b"one"), (2, false, b"two")]);
        state.home_new_pieces("a.seg");
        state
            .merge(vec![], vec![(2, true, b"+2".to_vec())], false)
            .unwrap();
        state.home_new_pieces("b.seg");
        let encoded = encode(&state);
        let placed: Vec<(&str, Vec<Placed<'_>>)> = encoded
            .segments
            .iter()
            .map(|(n, p)| (*n, p.clone()))
            .collect();
        assert_eq!(
            placed,
            [
                ("a.seg", vec![(0, &b"one"[..]), (3, &b"two"[..])]),
                ("b.seg", vec![(0, &b"+2"[..])])
            ]
        );
        // Written again without a piece no longer held: zeros where it was.
        assert_eq!(segment_bytes(&[(3, b"two")]), b"\0\0\0two");
    }

    #[test]
    fn a_corrupt_piece_or_a_name_outside_the_folder_is_refused() {
        let mut state = held(&[(1, false, b"one")]);
        state.home_new_pieces("a.seg");
        let encoded = encode(&state);
        let flipped = BTreeMap::from([("a.seg".to_owned(), b"onE".to_vec())]);
        let decoded = decode(&encoded.state_file).unwrap();
        assert_eq!(decoded.load(read_from(&flipped)).unwrap_err(), "checksum");
        for bad in ["../a.seg", ".seg", "a/b.seg", "a.state"] {
            assert!(!is_segment_name(bad), "{bad}");
        }
        let mut escaping = held(&[(1, false, b"one")]);
        escaping.home_new_pieces("../a.seg");
        let error = decode(&encode(&escaping).state_file).unwrap_err();
        assert_eq!(
            error,
            "the state file names `../a.seg`, which is no segment file"
        );
    }

    #[test]
    fn state_files_of_format_2_read_as_chains_of_one() {
        #[derive(Serialize)]
        struct Format2<'a> {
            operator_state: &'a [u8],
            key_groups: Vec<(u32, &'a [u8])>,
        }
        let bytes = postcard::to_stdvec(&Format2 {
            operator_state: b"pos",
            key_groups: vec![(3, b"three")],
        })
        .unwrap();
        let held = decode_grouped(&bytes).unwrap();
        assert_eq!(held.key_groups[&3], [Piece::new(&b"three"[..])]);
        assert_eq!(&*held.operator_state, b"pos");
        assert!(decode_grouped(&[0xff, 0xff]).is_err());
    }
}
