//! Decoding a key group's payload, `[[bin key, value], ...]`, entry by entry, straight into
//! the group's table: an older version's values too, each converted as it is decoded by the
//! operator's `migrate` ([`OldEntries`]), with no list of entries in between.
//!
//! The array and each entry's header and key are read by hand, the key borrowed from the
//! payload; only the value goes through serde. (Through `rmp_serde` alone, each key was read
//! through `io::Read::read_to_end` into a buffer: a quarter of a restore's time.)

use serde::de::DeserializeOwned;

use super::Load;
use super::group::Group;

/// Where decoded entries go.
pub(super) trait Fill<V> {
    /// Room for `n` more entries.
    fn reserve(&mut self, n: usize);
    /// One entry.
    fn put(&mut self, key: &[u8], value: V);
}

/// A group being loaded: by `restore`, its entries go in clean (a key given twice keeps its
/// last value); by `restore-changes`, each is marked, to be in the next snapshot.
pub(super) struct Loading<'g, V> {
    pub(super) group: &'g mut Group<V>,
    pub(super) load: Load,
}

impl<V> Fill<V> for Loading<'_, V> {
    fn reserve(&mut self, n: usize) {
        self.group.reserve(n);
    }

    fn put(&mut self, key: &[u8], value: V) {
        drop(self.group.put(key, value, self.load == Load::Changes));
    }
}

/// The entries of a key group written in an older version of the operator's state format, given
/// to its `migrate`: [`convert`](OldEntries::convert) says what each old value becomes.
pub struct OldEntries<'a, V> {
    payload: &'a [u8],
    into: Loading<'a, V>,
}

impl<'a, V> OldEntries<'a, V> {
    pub(super) fn new(payload: &'a [u8], into: Loading<'a, V>) -> Self {
        Self { payload, into }
    }

    /// Decodes each entry's value as an `Old` and keeps `convert(key, old)` as the key's value,
    /// entry by entry, straight into the state (a migration of 1 M keys builds no list of
    /// them). The payload's errors are refused as a restore's are.
    pub fn convert<Old: DeserializeOwned>(
        mut self,
        convert: impl FnMut(&[u8], Old) -> V,
    ) -> Result<(), String> {
        let mut into = Converting {
            into: &mut self.into,
            convert,
        };
        fill(self.payload, &mut into)
    }
}

/// Old values into a group, converted on the way.
struct Converting<'i, 'g, V, F> {
    into: &'i mut Loading<'g, V>,
    convert: F,
}

impl<Old, V, F: FnMut(&[u8], Old) -> V> Fill<Old> for Converting<'_, '_, V, F> {
    fn reserve(&mut self, n: usize) {
        self.into.reserve(n);
    }

    fn put(&mut self, key: &[u8], old: Old) {
        let value = (self.convert)(key, old);
        self.into.put(key, value);
    }
}

#[cfg(test)]
impl<V> Fill<V> for Vec<(super::Key, V)> {
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }

    fn put(&mut self, key: &[u8], value: V) {
        self.push((super::Key::from_slice(key), value));
    }
}

/// Puts every entry of `payload` into `into`, in order; the payload must hold that array and
/// nothing after it.
pub(super) fn fill<V: DeserializeOwned>(
    payload: &[u8],
    into: &mut impl Fill<V>,
) -> Result<(), String> {
    let mut rest = payload;
    let entries =
        rmp::decode::read_array_len(&mut rest).map_err(|e| malformed("an array of entries", e))?;
    // The count is the payload's word: room for no more entries than its bytes can hold (each
    // takes at least 4: two headers, a key's length, a value), so that a corrupt count is an
    // error below rather than an allocation of gigabytes.
    into.reserve((entries as usize).min(rest.len() / 4));
    for index in 0..entries {
        let (key, value) = entry(&mut rest).map_err(|e| format!("entry {index}: {e}"))?;
        into.put(key, value);
    }
    match rest.len() {
        0 => Ok(()),
        left => Err(format!(
            "the state payload has {left} unexpected trailing bytes"
        )),
    }
}

/// One `[bin key, value]`, from the front of `rest`.
fn entry<'p, V: DeserializeOwned>(rest: &mut &'p [u8]) -> Result<(&'p [u8], V), String> {
    let len = match **rest {
        // The head `encode.rs` writes for a key shorter than 256 bytes, read at once.
        [0x92, 0xc4, len, ..] => {
            *rest = &rest[3..];
            u32::from(len)
        }
        _ => entry_head(rest)?,
    };
    let key = rest
        .split_off(..len as usize)
        .ok_or("a key runs past the end of the state")?;
    // A reader of `&[u8]` reads numbers in place; it copies only bytes and strings.
    let value = V::deserialize(&mut rmp_serde::Deserializer::new(&mut *rest))
        .map_err(|e| format!("the value does not decode: {e}"))?;
    Ok((key, value))
}

/// An entry's array header and its key's length, `[bin key, ...`, in any of the encodings
/// MessagePack allows.
fn entry_head(rest: &mut &[u8]) -> Result<u32, String> {
    match rmp::decode::read_array_len(rest).map_err(|e| malformed("an entry", e))? {
        2 => {}
        n => return Err(format!("an entry is an array of {n}, not of [key, value]")),
    }
    rmp::decode::read_bin_len(rest).map_err(|e| malformed("a key (bin)", e))
}

fn malformed(what: &str, error: impl std::fmt::Display) -> String {
    format!("the state payload does not decode: expected {what}: {error}")
}

/// The entries of a payload, as owned keys and values.
#[cfg(test)]
pub(super) fn entries<V: DeserializeOwned>(payload: &[u8]) -> Result<Vec<(super::Key, V)>, String> {
    let mut entries = Vec::new();
    fill(payload, &mut entries)?;
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Key;

    fn decoded(payload: &[u8]) -> Result<Vec<(Key, u64)>, String> {
        entries(payload)
    }

    #[test]
    fn entries_decode_in_order_with_borrowed_keys() {
        let payload = rmp_serde::to_vec(&[
            (serde_bytes::Bytes::new(b"apple"), 3u64),
            (serde_bytes::Bytes::new(&[b'k'; 40]), 300),
            // A `bin 16` key: not the three-byte head read at once.
            (serde_bytes::Bytes::new(&[b'l'; 300]), 4),
        ])
        .unwrap();
        let entries = decoded(&payload).unwrap();
        assert_eq!(entries[0], (Key::from_slice(b"apple"), 3));
        assert_eq!(entries[1], (Key::from_slice(&[b'k'; 40]), 300));
        assert_eq!(entries[2], (Key::from_slice(&[b'l'; 300]), 4));
    }

    #[test]
    fn malformed_payloads_are_refused_naming_the_entry() {
        let one = |entry: &[u8]| [&[0x91][..], entry].concat();
        let cases: [(Vec<u8>, &str); 8] = [
            (
                vec![0x01],
                "the state payload does not decode: expected an array of entries",
            ),
            (
                one(&[0x93, 0xc4, 1, b'a', 1, 2]),
                "entry 0: an entry is an array of 3",
            ),
            // A string key, where the format has bytes.
            (
                one(&[0x92, 0xa1, b'a', 1]),
                "entry 0: the state payload does not decode: expected a key (bin)",
            ),
            (
                one(&[0x92, 0xc4, 9, b'a']),
                "entry 0: a key runs past the end of the state",
            ),
            (
                one(&[0x92, 0xc4, 1, b'a', 0xc0]),
                "entry 0: the value does not decode",
            ),
            (
                [&[0x92][..], &[0x92, 0xc4, 1, b'a', 1]].concat(),
                "entry 1: the state payload does not decode: expected an entry",
            ),
            (
                one(&[0x92, 0xc4, 1, b'a', 1, 7, 7]),
                "the state payload has 2 unexpected trailing bytes",
            ),
            // A count of 4 294 967 295 entries, and one: refused, nothing allocated for the rest.
            (
                [
                    &[0xdd, 0xff, 0xff, 0xff, 0xff][..],
                    &[0x92, 0xc4, 1, b'a', 1],
                ]
                .concat(),
                "entry 1: the state payload does not decode: expected an entry",
            ),
        ];
        for (payload, expected) in cases {
            let error = decoded(&payload).unwrap_err();
            assert!(error.starts_with(expected), "{payload:x?}: {error}");
        }
    }
}
