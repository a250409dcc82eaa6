//! MessagePack values, as the host reads and writes them for `host state`: decoded from state
//! blobs written by any SDK (`rmp-serde`, `msgpack`, `@msgpack/msgpack`), encoded in the
//! smallest encoding that holds each value, as all three do (`docs/state-format.md`).
//!
//! The bytes come from guests: every length is checked against the bytes left before anything
//! is allocated for it, and nesting is bounded ([`DEPTH_MAX`]), so a hostile blob is refused,
//! never a crash. Performs no I/O.

/// Deepest nesting of arrays and maps decoded: far beyond any state's shape, far below what
/// would exhaust the stack.
pub const DEPTH_MAX: usize = 128;

/// A MessagePack value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// `nil`.
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// A non-negative integer.
    UInt(u64),
    /// A negative integer.
    Int(i64),
    /// A 32-bit float.
    F32(f32),
    /// A 64-bit float.
    F64(f64),
    /// A UTF-8 string (`str`).
    Str(String),
    /// Bytes (`bin`).
    Bin(Vec<u8>),
    /// An array.
    Array(Vec<Value>),
    /// A map, its pairs in the order written.
    Map(Vec<(Value, Value)>),
    /// An extension type and its bytes.
    Ext(i8, Vec<u8>),
}

impl Value {
    /// An integer: non-negative ones as [`Value::UInt`], negative ones as [`Value::Int`].
    pub fn int(n: i64) -> Value {
        match u64::try_from(n) {
            Ok(n) => Value::UInt(n),
            Err(_) => Value::Int(n),
        }
    }

    /// What kind of value it is, for people.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::Nil => "nil",
            Value::Bool(_) => "a boolean",
            Value::UInt(_) => "an unsigned integer",
            Value::Int(_) => "a negative integer",
            Value::F32(_) | Value::F64(_) => "a float",
            Value::Str(_) => "a string",
            Value::Bin(_) => "bytes",
            Value::Array(_) => "an array",
            Value::Map(_) => "a map",
            Value::Ext(..) => "an extension value",
        }
    }
}

/// Why bytes are not one MessagePack value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end inside a value.
    #[error("the bytes end inside a value")]
    Truncated,
    /// A byte no MessagePack value starts with.
    #[error("byte {byte:#04x} at offset {at} starts no MessagePack value")]
    Reserved {
        /// The byte.
        byte: u8,
        /// Where.
        at: usize,
    },
    /// Nested deeper than [`DEPTH_MAX`].
    #[error("nested deeper than {DEPTH_MAX} arrays and maps")]
    TooDeep,
    /// A `str` that is not UTF-8.
    #[error("a string at offset {0} is not UTF-8")]
    NotUtf8(usize),
    /// Bytes left after the value.
    #[error("{0} bytes follow the value")]
    Trailing(usize),
}

/// Decodes `bytes`, which must hold exactly one value.
pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.value(0)?;
    match bytes.len() - reader.at {
        0 => Ok(value),
        left => Err(DecodeError::Trailing(left)),
    }
}

/// Decodes the first value of `bytes`; returns it and how many bytes it took.
pub fn decode_prefix(bytes: &[u8]) -> Result<(Value, usize), DecodeError> {
    let mut reader = Reader { bytes, at: 0 };
    let value = reader.value(0)?;
    Ok((value, reader.at))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Reads values one after another, each kind asked for by the caller: a key group's pairs
/// are read straight into keys and values, with no array of arrays built first.
pub struct Cursor<'a> {
    reader: Reader<'a>,
}

impl<'a> Cursor<'a> {
    /// A cursor at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor {
            reader: Reader { bytes, at: 0 },
        }
    }

    /// The next marker, not taken.
    fn peek(&self) -> Result<u8, DecodeError> {
        let reader = &self.reader;
        reader
            .bytes
            .get(reader.at)
            .copied()
            .ok_or(DecodeError::Truncated)
    }

    /// The length of the array that comes next, its header taken; `None` (nothing taken) if
    /// no array comes next.
    pub fn array_len(&mut self) -> Result<Option<usize>, DecodeError> {
        Ok(match self.peek()? {
            marker @ 0x90..=0x9f => {
                self.reader.at += 1;
                Some(usize::from(marker & 0x0f))
            }
            marker @ (0xdc | 0xdd) => {
                self.reader.at += 1;
                Some(self.reader.len(2 << (marker - 0xdc))?)
            }
            _ => None,
        })
    }

    /// The bytes that come next (`bin`), taken; `None` if none come next.
    pub fn bin(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        Ok(match self.peek()? {
            marker @ 0xc4..=0xc6 => {
                self.reader.at += 1;
                let len = self.reader.len(1 << (marker - 0xc4))?;
                Some(self.reader.take(len)?)
            }
            _ => None,
        })
    }

    /// The value that comes next, whole.
    pub fn value(&mut self) -> Result<Value, DecodeError> {
        self.reader.value(0)
    }

    /// Bytes not read yet.
    pub fn left(&self) -> usize {
        self.reader.bytes.len() - self.reader.at
    }
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(len).ok_or(DecodeError::Truncated)?;
        let taken = self.bytes.get(self.at..end).ok_or(DecodeError::Truncated)?;
        self.at = end;
        Ok(taken)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn len(&mut self, width: usize) -> Result<usize, DecodeError> {
        Ok(match width {
            1 => usize::from(self.be::<1>()?[0]),
            2 => usize::from(u16::from_be_bytes(self.be()?)),
            _ => u32::from_be_bytes(self.be()?) as usize,
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        let start = self.at;
        let marker = self.be::<1>()?[0];
        Ok(match marker {
            0x00..=0x7f => Value::UInt(u64::from(marker)),
            0x80..=0x8f => self.map(usize::from(marker & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(marker & 0x0f), depth)?,
            0xa0..=0xbf => self.str(usize::from(marker & 0x1f), start)?,
            0xc0 => Value::Nil,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                let len = self.len(1 << (marker - 0xc4))?;
                Value::Bin(self.take(len)?.to_vec())
            }
            0xc7..=0xc9 => {
                let len = self.len(1 << (marker - 0xc7))?;
                self.ext(len)?
            }
            0xca => Value::F32(f32::from_be_bytes(self.be()?)),
            0xcb => Value::F64(f64::from_be_bytes(self.be()?)),
            0xcc => Value::UInt(u64::from(self.be::<1>()?[0])),
            0xcd => Value::UInt(u64::from(u16::from_be_bytes(self.be()?))),
            0xce => Value::UInt(u64::from(u32::from_be_bytes(self.be()?))),
            0xcf => Value::UInt(u64::from_be_bytes(self.be()?)),
            0xd0 => Value::int(i64::from(i8::from_be_bytes(self.be()?))),
            0xd1 => Value::int(i64::from(i16::from_be_bytes(self.be()?))),
            0xd2 => Value::int(i64::from(i32::from_be_bytes(self.be()?))),
            0xd3 => Value::int(i64::from_be_bytes(self.be()?)),
            0xd4..=0xd8 => self.ext(1 << (marker - 0xd4))?,
            0xd9..=0xdb => {
                let len = self.len(1 << (marker - 0xd9))?;
                self.str(len, start)?
            }
            0xdc | 0xdd => {
                let len = self.len(2 << (marker - 0xdc))?;
                self.array(len, depth)?
            }
            0xde | 0xdf => {
                let len = self.len(2 << (marker - 0xde))?;
                self.map(len, depth)?
            }
            0xe0..=0xff => Value::Int(i64::from(marker as i8)),
            0xc1 => {
                return Err(DecodeError::Reserved {
                    byte: marker,
                    at: start,
                });
            }
        })
    }

    fn str(&mut self, len: usize, start: usize) -> Result<Value, DecodeError> {
        let bytes = self.take(len)?;
        let text = std::str::from_utf8(bytes).map_err(|_| DecodeError::NotUtf8(start))?;
        Ok(Value::Str(text.to_owned()))
    }

    fn ext(&mut self, len: usize) -> Result<Value, DecodeError> {
        let kind = i8::from_be_bytes(self.be()?);
        Ok(Value::Ext(kind, self.take(len)?.to_vec()))
    }

    /// Room for at most as many items as bytes are left (each takes one at least).
    fn room(&self, len: usize) -> usize {
        len.min(self.bytes.len() - self.at)
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        if depth >= DEPTH_MAX {
            return Err(DecodeError::TooDeep);
        }
        let mut items = Vec::with_capacity(self.room(len));
        for _ in 0..len {
            items.push(self.value(depth + 1)?);
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        if depth >= DEPTH_MAX {
            return Err(DecodeError::TooDeep);
        }
        let mut pairs = Vec::with_capacity(self.room(len) / 2);
        for _ in 0..len {
            let key = self.value(depth + 1)?;
            pairs.push((key, self.value(depth + 1)?));
        }
        Ok(Value::Map(pairs))
    }
}

/// Appends `value` to `out`, each part in its smallest encoding.
pub fn encode(value: &Value, out: &mut Vec<u8>) {
    use rmp::encode as e;
    let fits = "a length of a decoded or JSON value fits in 32 bits";
    match value {
        Value::Nil => e::write_nil(out).expect("writing to a Vec"),
        Value::Bool(b) => e::write_bool(out, *b).expect("writing to a Vec"),
        Value::UInt(n) => drop(e::write_uint(out, *n).expect("writing to a Vec")),
        Value::Int(n) => drop(e::write_sint(out, *n).expect("writing to a Vec")),
        Value::F32(x) => e::write_f32(out, *x).expect("writing to a Vec"),
        Value::F64(x) => e::write_f64(out, *x).expect("writing to a Vec"),
        Value::Str(s) => e::write_str(out, s).expect(fits),
        Value::Bin(b) => e::write_bin(out, b).expect(fits),
        Value::Array(items) => {
            e::write_array_len(out, u32::try_from(items.len()).expect(fits)).expect(fits);
            items.iter().for_each(|item| encode(item, out));
        }
        Value::Map(pairs) => {
            e::write_map_len(out, u32::try_from(pairs.len()).expect(fits)).expect(fits);
            for (key, value) in pairs {
                encode(key, out);
                encode(value, out);
            }
        }
        Value::Ext(kind, bytes) => {
            e::write_ext_meta(out, u32::try_from(bytes.len()).expect(fits), *kind).expect(fits);
            out.extend_from_slice(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_delta_decodes_and_encodes_to_the_same_bytes() {
        // docs/state-format.md's test vector.
        let bytes = hex::decode(
            "94aa776f72642d636f756e740191 92c4056170706c650491c40470656172".replace(' ', ""),
        )
        .unwrap();
        let value = decode(&bytes).unwrap();
        let bin = |s: &str| Value::Bin(s.as_bytes().to_vec());
        assert_eq!(
            value,
            Value::Array(vec![
                Value::Str("word-count".into()),
                Value::UInt(1),
                Value::Array(vec![Value::Array(vec![bin("apple"), Value::UInt(4)])]),
                Value::Array(vec![bin("pear")]),
            ])
        );
        let mut out = Vec::new();
        encode(&value, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn every_kind_of_value_round_trips_in_its_smallest_encoding() {
        let values = [
            Value::Nil,
            Value::Bool(true),
            Value::UInt(0),
            Value::UInt(127),
            Value::UInt(128),
            Value::UInt(70_000),
            Value::UInt(u64::MAX),
            Value::Int(-1),
            Value::Int(-33),
            Value::Int(i64::MIN),
            Value::F32(1.5),
            Value::F64(-2.25),
            Value::Str("é".repeat(40)),
            Value::Bin(vec![0xff; 300]),
            Value::Map(vec![(Value::UInt(1), Value::Str("a".into()))]),
            Value::Ext(-3, vec![1, 2, 3, 4]),
        ];
        let expected_len = [1, 1, 1, 1, 2, 5, 9, 1, 2, 9, 5, 9, 82, 303, 4, 6];
        for (value, len) in values.iter().zip(expected_len) {
            let mut out = Vec::new();
            encode(value, &mut out);
            assert_eq!(out.len(), len, "{value:?}");
            assert_eq!(&decode(&out).unwrap(), value);
        }
    }

    #[test]
    fn hostile_bytes_are_refused_not_trusted() {
        // An array claiming 4 billion items in five bytes.
        assert_eq!(
            decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            decode(&[0xc1]),
            Err(DecodeError::Reserved { byte: 0xc1, at: 0 })
        );
        assert_eq!(decode(&[0x01, 0x02]), Err(DecodeError::Trailing(1)));
        assert_eq!(decode(&[0xa1, 0xff]), Err(DecodeError::NotUtf8(0)));
        let deep = vec![0x91; DEPTH_MAX + 1];
        assert_eq!(decode(&deep), Err(DecodeError::TooDeep));
        let mut nested = vec![0x91; DEPTH_MAX - 1];
        nested.push(0xc0);
        assert!(decode(&nested).is_ok());
    }
}
