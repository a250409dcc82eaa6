//! The portable state envelope (`docs/state-format.md`), read and written by the host: a blob
//! is `[format, version, payload]`; a key group's payload is `[[bin key, value], …]`, and its
//! delta `[format, version, upserts, removed]`. A key group's chain (its whole state, then
//! its deltas) resolves to each key's value and the version of the piece that last set it.
//!
//! A blob in another encoding is named ([`Foreign`]): the Rust SDK's `encode_state` writes
//! postcard, which only its own module reads. Performs no I/O.

use std::collections::HashMap;

use super::msgpack::{self, DecodeError, Value};

/// A blob that is not in the envelope, as far as the host can tell what it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Foreign {
    /// Not MessagePack, but a postcard varint first: what `encode_state` writes.
    #[error(
        "{len} bytes that are not MessagePack ({problem}); they read as postcard, which the \
         Rust SDK's `encode_state` writes (state version {version}), and which only the module \
         that wrote them reads"
    )]
    Postcard {
        /// The blob's length.
        len: usize,
        /// The version its first varint gives.
        version: u32,
        /// Why it is not MessagePack.
        problem: DecodeError,
    },
    /// Neither MessagePack nor postcard.
    #[error("{len} bytes of no encoding the host reads ({problem})")]
    Unknown {
        /// The blob's length.
        len: usize,
        /// Why it is not MessagePack.
        problem: DecodeError,
    },
    /// MessagePack, but not `[format, version, payload]`.
    #[error("MessagePack, but not an envelope [format, version, payload]: {0}")]
    NotEnvelope(String),
}

/// A blob's envelope opened.
#[derive(Clone, Debug, PartialEq)]
pub struct Opened {
    /// The state's format name.
    pub format: String,
    /// The version of its payload.
    pub version: u32,
    /// The payload (a delta's upserts).
    pub payload: Value,
    /// A key group's delta: the keys it removes.
    pub removed: Option<Value>,
}

/// Opens the envelope of `blob`.
pub fn open(blob: &[u8]) -> Result<Opened, Foreign> {
    let value = msgpack::decode(blob).map_err(|problem| foreign(blob, problem))?;
    let Value::Array(items) = value else {
        return Err(Foreign::NotEnvelope(format!(
            "{}, not an array",
            value.kind()
        )));
    };
    let len = items.len();
    let mut items = items.into_iter();
    let (Some(format), Some(version), Some(payload)) = (items.next(), items.next(), items.next())
    else {
        return Err(Foreign::NotEnvelope(format!("an array of {len}")));
    };
    let format = match format {
        Value::Str(format) => format,
        other => {
            return Err(Foreign::NotEnvelope(format!(
                "its format is {}",
                other.kind()
            )));
        }
    };
    let version = match version {
        Value::UInt(v) => u32::try_from(v).ok(),
        _ => None,
    };
    let version = version
        .ok_or_else(|| Foreign::NotEnvelope("its version is no integer of 32 bits".to_owned()))?;
    let removed = items.next();
    if items.next().is_some() {
        return Err(Foreign::NotEnvelope(format!("an array of {len}")));
    }
    Ok(Opened {
        format,
        version,
        payload,
        removed,
    })
}

/// What `blob`, not MessagePack, may be.
fn foreign(blob: &[u8], problem: DecodeError) -> Foreign {
    match postcard::take_from_bytes::<u32>(blob) {
        Ok((version, _)) => Foreign::Postcard {
            len: blob.len(),
            version,
            problem,
        },
        Err(_) => Foreign::Unknown {
            len: blob.len(),
            problem,
        },
    }
}

/// One key's value in a key group, with the version of the piece that set it.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The version of the piece that last set the value.
    pub version: u32,
    /// The value.
    pub value: Value,
}

/// A key group's state: every key's value, in key order, each key once.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group {
    /// The state's format name.
    pub format: String,
    /// Each key's value, by key.
    pub entries: Vec<(Vec<u8>, Entry)>,
}

impl Group {
    /// Whether the group holds `key`.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.entries
            .binary_search_by(|(k, _)| k[..].cmp(key))
            .is_ok()
    }
}

/// Why a key group's chain does not give its state.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// A piece is not in the envelope.
    #[error("piece {piece}: {found}")]
    Foreign {
        /// Which piece of the chain (0: the whole state).
        piece: usize,
        /// What it is.
        found: Foreign,
    },
    /// A piece is in the envelope, but not as a key group's state.
    #[error("piece {piece}: {problem}")]
    Malformed {
        /// Which piece of the chain.
        piece: usize,
        /// What is wrong.
        problem: String,
    },
}

/// One piece of a key group's chain, read.
struct Piece {
    format: String,
    version: u32,
    pairs: Vec<Pair>,
    /// A delta's removed keys.
    removed: Option<Vec<Vec<u8>>>,
}

/// The state of a key group whose chain is `pieces` (its whole state, then deltas).
pub fn resolve<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Result<Group, GroupError> {
    let mut format = String::new();
    // The whole state alone (the common case) is sorted once; a chain is applied key by key.
    let mut whole: Vec<(Vec<u8>, Entry)> = Vec::new();
    let mut applied: Option<HashMap<Vec<u8>, Entry>> = None;
    for (i, bytes) in pieces.into_iter().enumerate() {
        let malformed = |problem: String| GroupError::Malformed { piece: i, problem };
        let piece = open_piece(bytes).map_err(|e| match e {
            Err(found) => GroupError::Foreign { piece: i, found },
            Ok(problem) => malformed(problem),
        })?;
        match (i, &piece.removed) {
            (0, Some(_)) => return Err(malformed("a delta where the whole state belongs".into())),
            (1.., None) => return Err(malformed("whole state where a delta belongs".into())),
            _ => {}
        }
        if i == 0 {
            format = piece.format;
        } else if piece.format != format {
            let (was, is) = (&format, &piece.format);
            return Err(malformed(format!(
                "format `{is}` in a group of format `{was}`"
            )));
        }
        let version = piece.version;
        let entries = piece
            .pairs
            .into_iter()
            .map(|(key, value)| (key, Entry { version, value }));
        match (i, &mut applied) {
            (0, _) => whole = entries.collect(),
            (_, None) => {
                let mut map: HashMap<Vec<u8>, Entry> =
                    std::mem::take(&mut whole).into_iter().collect();
                apply(&mut map, piece.removed.unwrap_or_default(), entries);
                applied = Some(map);
            }
            (_, Some(map)) => apply(map, piece.removed.unwrap_or_default(), entries),
        }
    }
    let mut entries = match applied {
        Some(map) => map.into_iter().collect(),
        None => whole,
    };
    // Stable: of a key written twice in one piece, the later value stays, as a reader's map.
    entries.sort_by(|(a, _), (b, _)| a.cmp(b));
    entries.dedup_by(|later, earlier| {
        let same = later.0 == earlier.0;
        if same {
            std::mem::swap(later, earlier);
        }
        same
    });
    Ok(Group { format, entries })
}

fn apply(
    map: &mut HashMap<Vec<u8>, Entry>,
    removed: Vec<Vec<u8>>,
    upserts: impl Iterator<Item = (Vec<u8>, Entry)>,
) {
    for key in removed {
        map.remove(&key);
    }
    map.extend(upserts);
}

/// A key and its value, as a piece holds them.
type Pair = (Vec<u8>, Value);

/// Why part of a piece does not read: its bytes, or what they hold.
enum Unread {
    /// Not MessagePack.
    Bytes(DecodeError),
    /// MessagePack of another shape.
    Shape,
}

impl From<DecodeError> for Unread {
    fn from(e: DecodeError) -> Unread {
        Unread::Bytes(e)
    }
}

/// Reads one piece of a chain: `Err(Err(_))` if it is not in the envelope, `Err(Ok(_))` if it
/// is but not as a key group's state.
fn open_piece(blob: &[u8]) -> Result<Piece, Result<String, Foreign>> {
    let not_envelope = || {
        let found = open(blob).err();
        Err(found.unwrap_or_else(|| Foreign::NotEnvelope("an unknown shape".into())))
    };
    let unread = |e: Unread, shape: &str| match e {
        Unread::Bytes(e) => Err(foreign(blob, e)),
        Unread::Shape => Ok(shape.to_owned()),
    };
    let mut cursor = msgpack::Cursor::new(blob);
    let len = match cursor.array_len() {
        Ok(Some(len @ (3 | 4))) => len,
        Ok(_) => return Err(not_envelope()),
        Err(e) => return Err(Err(foreign(blob, e))),
    };
    let (format, version) = match (cursor.value(), cursor.value()) {
        (Ok(Value::Str(format)), Ok(Value::UInt(version))) if version <= u64::from(u32::MAX) => {
            (format, version as u32)
        }
        _ => return Err(not_envelope()),
    };
    let pairs = read_pairs(&mut cursor)
        .map_err(|e| unread(e, "its payload is no array of [bin key, value] pairs"))?;
    let removed = match len {
        3 => None,
        _ => Some(
            read_keys(&mut cursor)
                .map_err(|e| unread(e, "its removed keys are no array of bin"))?,
        ),
    };
    match cursor.left() {
        0 => Ok(Piece {
            format,
            version,
            pairs,
            removed,
        }),
        left => Err(Err(foreign(blob, DecodeError::Trailing(left)))),
    }
}

/// `[[bin key, value], …]`.
fn read_pairs(cursor: &mut msgpack::Cursor<'_>) -> Result<Vec<Pair>, Unread> {
    let len = cursor.array_len()?.ok_or(Unread::Shape)?;
    let mut pairs = Vec::with_capacity(len.min(cursor.left() / 3));
    for _ in 0..len {
        if cursor.array_len()? != Some(2) {
            return Err(Unread::Shape);
        }
        let key = cursor.bin()?.ok_or(Unread::Shape)?.to_vec();
        pairs.push((key, cursor.value()?));
    }
    Ok(pairs)
}

/// `[bin, …]`.
fn read_keys(cursor: &mut msgpack::Cursor<'_>) -> Result<Vec<Vec<u8>>, Unread> {
    let len = cursor.array_len()?.ok_or(Unread::Shape)?;
    let mut keys = Vec::with_capacity(len.min(cursor.left()));
    for _ in 0..len {
        keys.push(cursor.bin()?.ok_or(Unread::Shape)?.to_vec());
    }
    Ok(keys)
}

fn header(out: &mut Vec<u8>, len: u32, format: &str, version: u32) {
    rmp::encode::write_array_len(out, len).expect("writing to a Vec");
    rmp::encode::write_str(out, format).expect("a format name fits in 32 bits");
    rmp::encode::write_uint(out, u64::from(version)).expect("writing to a Vec");
}

fn entries<'a>(out: &mut Vec<u8>, entries: impl ExactSizeIterator<Item = (&'a [u8], &'a Value)>) {
    let len = u32::try_from(entries.len()).expect("a key group holds fewer than 2^32 keys");
    rmp::encode::write_array_len(out, len).expect("writing to a Vec");
    for (key, value) in entries {
        rmp::encode::write_array_len(out, 2).expect("writing to a Vec");
        rmp::encode::write_bin(out, key).expect("a key fits in 32 bits");
        msgpack::encode(value, out);
    }
}

/// A key group's whole state: `[format, version, [[key, value], …]]`.
pub fn seal_whole<'a>(
    format: &str,
    version: u32,
    pairs: impl ExactSizeIterator<Item = (&'a [u8], &'a Value)>,
) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, 3, format, version);
    entries(&mut out, pairs);
    out
}

/// A key group's delta: `[format, version, upserts, removed]`.
pub fn seal_delta<'a>(
    format: &str,
    version: u32,
    upserts: impl ExactSizeIterator<Item = (&'a [u8], &'a Value)>,
    removed: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = Vec::new();
    header(&mut out, 4, format, version);
    entries(&mut out, upserts);
    let len = u32::try_from(removed.len()).expect("fewer than 2^32 keys");
    rmp::encode::write_array_len(&mut out, len).expect("writing to a Vec");
    for key in removed {
        rmp::encode::write_bin(&mut out, key).expect("a key fits in 32 bits");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn documented_delta() -> Vec<u8> {
        hex::decode("94aa776f72642d636f756e74019192c4056170706c650491c40470656172").unwrap()
    }

    #[test]
    fn a_chain_resolves_removals_first_then_upserts_each_with_its_version() {
        let apple = Value::UInt(3);
        let pear = Value::UInt(1);
        let whole = seal_whole(
            "word-count",
            1,
            [(&b"apple"[..], &apple), (&b"pear"[..], &pear)].into_iter(),
        );
        let later = seal_delta("word-count", 2, [(&b"fig"[..], &pear)].into_iter(), &[]);
        let group = resolve([&whole[..], &documented_delta(), &later]).unwrap();
        assert_eq!(group.format, "word-count");
        let got: Vec<(&[u8], u32, &Value)> = group
            .entries
            .iter()
            .map(|(k, e)| (&k[..], e.version, &e.value))
            .collect();
        assert_eq!(
            got,
            [
                (&b"apple"[..], 1, &Value::UInt(4)),
                (b"fig", 2, &Value::UInt(1))
            ]
        );
    }

    #[test]
    fn the_documented_delta_is_what_seal_delta_writes() {
        let four = Value::UInt(4);
        let sealed = seal_delta(
            "word-count",
            1,
            [(&b"apple"[..], &four)].into_iter(),
            &[b"pear".to_vec()],
        );
        assert_eq!(sealed, documented_delta());
    }

    #[test]
    fn a_chain_out_of_order_or_of_two_formats_is_malformed() {
        let one = Value::UInt(1);
        let delta = documented_delta();
        let whole = seal_whole("word-count", 1, [(&b"a"[..], &one)].into_iter());
        let other = seal_delta("other", 1, [(&b"a"[..], &one)].into_iter(), &[]);
        let problem = |chain: &[&[u8]]| resolve(chain.iter().copied()).unwrap_err().to_string();
        assert!(problem(&[&delta]).contains("a delta where the whole state belongs"));
        assert!(problem(&[&whole, &whole]).contains("whole state where a delta belongs"));
        assert!(problem(&[&whole, &other]).contains("format `other` in a group of"));
        let not_pairs = seal_whole("word-count", 1, std::iter::empty());
        let mut wrong = not_pairs[..not_pairs.len() - 1].to_vec();
        wrong.push(0x91);
        wrong.push(0x01);
        assert!(problem(&[&wrong]).contains("no array of [bin key, value] pairs"));
    }

    #[test]
    fn postcard_is_named_as_such_and_other_bytes_as_unknown() {
        // What `encode_state(1, &(5u64, 1u64))` writes: postcard varints 1, 5, 1.
        let refused = open(&[0x01, 0x05, 0x01]).unwrap_err();
        assert!(matches!(
            refused,
            Foreign::Postcard {
                len: 3,
                version: 1,
                ..
            }
        ));
        assert!(refused.to_string().contains("`encode_state`"), "{refused}");
        let unknown = open(&[0xc1, 0xc1]).unwrap_err();
        assert!(matches!(
            unknown,
            Foreign::Postcard { .. } | Foreign::Unknown { .. }
        ));
        let not_varint = open(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
        assert!(
            matches!(not_varint, Foreign::Unknown { len: 6, .. }),
            "{not_varint:?}"
        );
        let array = open(&[0x92, 0x01, 0x02]).unwrap_err();
        assert_eq!(
            array.to_string(),
            "MessagePack, but not an envelope [format, version, payload]: an array of 2"
        );
    }
}
