//! The portable state envelope (`docs/state-format.md`): a MessagePack array
//! `[format, version, payload]` (or, for a key group's delta, `[format, version, upserts,
//! removed]`), which the Python and JavaScript SDKs read and write the same way, so that state
//! moves between languages across an upgrade.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a module's state means: a name, and a version of its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateFormat {
    /// The format's name (`"word-count"`): state of another name is refused.
    pub name: &'static str,
    /// The version this module writes; it may read older ones (migration).
    pub version: u32,
}

/// A blob opened: its format name, version, and the MessagePack payload still encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The format's name.
    pub format: &'a str,
    /// The version its payload was written in.
    pub version: u32,
    /// The payload, MessagePack.
    pub payload: &'a [u8],
    /// For a key group's delta (`[format, version, upserts, removed]`), the keys it removes:
    /// a MessagePack array of `bin`, still encoded.
    pub removed: Option<&'a [u8]>,
}

fn header(out: &mut Vec<u8>, format: StateFormat, len: u32) {
    rmp::encode::write_array_len(out, len).expect("writing to a Vec cannot fail");
    rmp::encode::write_str(out, format.name).expect("writing to a Vec cannot fail");
    rmp::encode::write_uint(out, u64::from(format.version)).expect("writing to a Vec cannot fail");
}

fn append<T: Serialize + ?Sized>(
    out: &mut Vec<u8>,
    format: StateFormat,
    value: &T,
) -> Result<(), String> {
    rmp_serde::encode::write(out, value).map_err(|e| {
        format!(
            "cannot encode state `{}` v{}: {e}",
            format.name, format.version
        )
    })
}

/// Encodes `payload` in an envelope of `format`.
pub fn seal<T: Serialize + ?Sized>(format: StateFormat, payload: &T) -> Result<Vec<u8>, String> {
    seal_with(format, |out| append(out, format, payload))
}

/// An envelope of `format` whose payload `write` appends (the SDK's key groups write theirs
/// entry by entry).
pub(crate) fn seal_with(
    format: StateFormat,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    header(&mut out, format, 3);
    write(&mut out)?;
    Ok(out)
}

/// Encodes a key group's delta: `upserts` in the shape of a group's payload, and the keys
/// `removed` (applied first).
pub fn seal_delta<T: Serialize + ?Sized, K: AsRef<[u8]>>(
    format: StateFormat,
    upserts: &T,
    removed: &[K],
) -> Result<Vec<u8>, String> {
    seal_delta_with(format, |out| append(out, format, upserts), removed)
}

/// A delta of `format` whose upserts `write` appends, then the keys `removed`.
pub(crate) fn seal_delta_with<K: AsRef<[u8]>>(
    format: StateFormat,
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
    removed: &[K],
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    header(&mut out, format, 4);
    write(&mut out)?;
    rmp::encode::write_array_len(&mut out, removed.len() as u32)
        .expect("writing to a Vec cannot fail");
    for key in removed {
        rmp::encode::write_bin(&mut out, key.as_ref()).expect("writing to a Vec cannot fail");
    }
    Ok(out)
}

/// Reads the envelope of `blob`, leaving its payload encoded.
pub fn open(blob: &[u8]) -> Result<Envelope<'_>, String> {
    let malformed = |what: &str| format!("the state is not a state envelope: {what}");
    let mut rest = blob;
    let len = rmp::decode::read_array_len(&mut rest).map_err(|_| malformed("no array"))?;
    if len != 3 && len != 4 {
        return Err(malformed(&format!(
            "an array of {len}, not [format, version, payload] or [format, version, upserts, removed]"
        )));
    }
    let (format, tail) =
        rmp::decode::read_str_from_slice(rest).map_err(|_| malformed("no format name"))?;
    let mut rest = tail;
    let version: u32 = rmp::decode::read_int(&mut rest).map_err(|_| malformed("no version"))?;
    let (payload, removed) = match len {
        3 => (rest, None),
        _ => {
            let mut after = rest;
            serde::de::IgnoredAny::deserialize(&mut rmp_serde::Deserializer::new(&mut after))
                .map_err(|_| malformed("no upserts"))?;
            let split = rest.len() - after.len();
            (&rest[..split], Some(after))
        }
    };
    Ok(Envelope {
        format,
        version,
        payload,
        removed,
    })
}

/// Decodes a payload, all of it.
pub fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, String> {
    decode_payload_with(payload, std::marker::PhantomData::<T>)
}

/// Decodes a payload, all of it, through `seed` (which may put what it reads in place).
///
/// It reads the payload in place (keys and other bytes are borrowed, not copied through
/// `io::Read`, which took a quarter of a restore's time). That reader does not say where it
/// stopped, so the end is checked by reading past it: only an empty rest fails there.
pub fn decode_payload_with<S, T>(payload: &[u8], seed: S) -> Result<T, String>
where
    S: for<'de> serde::de::DeserializeSeed<'de, Value = T>,
{
    let mut in_place = rmp_serde::Deserializer::from_read_ref(payload);
    let value = seed
        .deserialize(&mut in_place)
        .map_err(|e| format!("the state payload does not decode: {e}"))?;
    match serde::de::IgnoredAny::deserialize(&mut in_place) {
        Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
            if e.kind() == std::io::ErrorKind::UnexpectedEof =>
        {
            Ok(value)
        }
        _ => Err(format!(
            "the state payload has {} unexpected trailing bytes",
            trailing(payload)
        )),
    }
}

/// How many bytes follow the first value of `payload` (for the error: a payload that decoded).
fn trailing(payload: &[u8]) -> usize {
    let mut rest = payload;
    let skipped = serde::de::IgnoredAny::deserialize(&mut rmp_serde::Deserializer::new(&mut rest));
    skipped.map_or(0, |_| rest.len())
}

impl Envelope<'_> {
    /// Checks that the envelope is of format `name`.
    pub fn expect_format(&self, name: &str) -> Result<(), String> {
        if self.format != name {
            return Err(format!(
                "the state is of format `{}`, this module reads `{name}`",
                self.format
            ));
        }
        Ok(())
    }
}

/// The error for state of version `found` that a module of `format` cannot read.
pub fn unsupported(format: StateFormat, found: u32) -> String {
    format!(
        "state `{}` version {found} is not one this module reads (it writes version {})",
        format.name, format.version
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const COUNTS: StateFormat = StateFormat {
        name: "word-count",
        version: 1,
    };

    #[test]
    fn the_envelope_is_a_three_element_messagepack_array() {
        let blob = seal(COUNTS, &7u64).unwrap();
        // fixarray 3, fixstr 10 "word-count", 1, 7.
        let mut expected = vec![0x93, 0xaa];
        expected.extend_from_slice(b"word-count");
        expected.extend_from_slice(&[0x01, 0x07]);
        assert_eq!(blob, expected);
        let opened = open(&blob).unwrap();
        assert_eq!((opened.format, opened.version), ("word-count", 1));
        assert_eq!(decode_payload::<u64>(opened.payload), Ok(7));
    }

    #[test]
    fn a_delta_is_a_four_element_array_whose_upserts_read_as_a_payload() {
        let upserts = [(serde_bytes::Bytes::new(b"a"), 1u64)];
        let blob = seal_delta(COUNTS, &upserts, &[b"gone".to_vec()]).unwrap();
        assert_eq!(blob[0], 0x94, "fixarray 4");
        let opened = open(&blob).unwrap();
        let entries: Vec<(serde_bytes::ByteBuf, u64)> = decode_payload(opened.payload).unwrap();
        assert_eq!(entries, [(serde_bytes::ByteBuf::from(b"a".to_vec()), 1)]);
        let removed: Vec<serde_bytes::ByteBuf> = decode_payload(opened.removed.unwrap()).unwrap();
        assert_eq!(removed, [serde_bytes::ByteBuf::from(b"gone".to_vec())]);
        assert_eq!(open(&seal(COUNTS, &7u64).unwrap()).unwrap().removed, None);
    }

    #[test]
    fn malformed_and_foreign_state_is_refused_clearly() {
        assert!(open(&[]).unwrap_err().contains("not a state envelope"));
        assert!(
            open(&[0x92, 0xa1, b'x', 1])
                .unwrap_err()
                .contains("an array of 2")
        );
        let blob = seal(
            StateFormat {
                name: "other",
                version: 1,
            },
            &1u8,
        )
        .unwrap();
        let error = open(&blob)
            .unwrap()
            .expect_format("word-count")
            .unwrap_err();
        assert_eq!(
            error,
            "the state is of format `other`, this module reads `word-count`"
        );
        // A whole value after the payload, the start of one, and a value cut short.
        for (extra, count) in [(&[0u8][..], 1), (&[0xc4], 1), (&[0xc4, 2, b'a'], 3)] {
            let mut trailing = seal(COUNTS, &1u8).unwrap();
            trailing.extend_from_slice(extra);
            let opened = open(&trailing).unwrap();
            let error = decode_payload::<u8>(opened.payload).unwrap_err();
            assert!(
                error.contains(&format!(" {count} unexpected")),
                "{extra:?}: {error}"
            );
        }
        let cut = seal(COUNTS, &(1u8, 2u8)).unwrap();
        let opened = open(&cut[..cut.len() - 1]).unwrap();
        let error = decode_payload::<(u8, u8)>(opened.payload).unwrap_err();
        assert!(error.contains("does not decode"), "{error}");
    }
}
