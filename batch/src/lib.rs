//! Columnar batches, the one codec of the host and its Rust guests: a batch's columns read as
//! records once their offsets are checked ([`Records::new`]: the host checks every batch a
//! guest produces with it, the SDK every batch a guest receives), and built one record at a
//! time ([`BatchBuilder`]). No dependencies: it builds for the host and for `wasm32-wasip2`.
//! Its functions are `#[inline]`: they sit on the host's hot path (every batch is checked, and
//! read again by key-by), across a crate boundary that the host's release build does not
//! optimize through otherwise.

use std::fmt;
use std::iter::FusedIterator;

/// The five columns of a batch, borrowed: record `i`'s key is
/// `keys[key_ends[i - 1]..key_ends[i]]` (from 0 for the first record), and likewise its value.
#[derive(Debug, Clone, Copy)]
pub struct Columns<'a> {
    /// All keys, end to end.
    pub keys: &'a [u8],
    /// The end offset in `keys` of each record's key.
    pub key_ends: &'a [u32],
    /// All values, end to end.
    pub values: &'a [u8],
    /// The end offset in `values` of each record's value.
    pub value_ends: &'a [u32],
    /// Each record's timestamp.
    pub timestamps: &'a [i64],
    /// Each record's key group, if the batch came over a key-by edge; else empty.
    pub key_groups: &'a [u32],
}

/// One record of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The record's key (empty if it has none).
    pub key: &'a [u8],
    /// The record's value.
    pub value: &'a [u8],
    /// The record's timestamp.
    pub timestamp: i64,
    /// The key group of its key, if it came over a key-by edge.
    pub key_group: Option<u32>,
}

/// An iterator over the records of columns whose offsets have been checked.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    columns: Columns<'a>,
    next: usize,
}

impl<'a> Records<'a> {
    /// Checks that there is one key end and one value end per timestamp, and that the ends are
    /// non-decreasing and within their columns.
    #[inline]
    pub fn new(columns: Columns<'a>) -> Result<Self, MalformedBatch> {
        let records = columns.timestamps.len();
        check_ends("key", columns.key_ends, columns.keys.len(), records)?;
        check_ends("value", columns.value_ends, columns.values.len(), records)?;
        let groups = columns.key_groups.len();
        if groups != 0 && groups != records {
            return Err(MalformedBatch::KeyGroups { groups, records });
        }
        Ok(Self { columns, next: 0 })
    }

    /// The records of columns that [`Records::new`] accepted before (the host reads a batch
    /// again after checking it once). Columns that would not pass make the iterator panic;
    /// it never reads out of bounds.
    #[inline]
    pub fn of_checked(columns: Columns<'a>) -> Self {
        Self { columns, next: 0 }
    }

    /// Whether every record carries its key group (the batch came over a key-by edge).
    #[inline]
    pub fn keyed(&self) -> bool {
        self.columns.key_groups.len() == self.columns.timestamps.len()
    }

    /// The key groups of the records, if they carry them.
    #[inline]
    pub fn key_groups(&self) -> &'a [u32] {
        self.columns.key_groups
    }
}

/// How a batch's columns fail to read as records; each names the column at fault (`key` or
/// `value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MalformedBatch {
    /// A column has not one end per record (per timestamp).
    EndCount {
        /// The column.
        column: &'static str,
        /// Its ends.
        ends: usize,
        /// The records (timestamps).
        records: usize,
    },
    /// An end before the one of the record before it.
    Decreasing {
        /// The column.
        column: &'static str,
        /// The record.
        index: usize,
        /// Its end.
        end: u32,
        /// The previous record's end.
        previous: u32,
    },
    /// The last end past the column's bytes.
    PastColumn {
        /// The column.
        column: &'static str,
        /// The last end.
        end: u32,
        /// The column's bytes.
        bytes: usize,
    },
    /// Key groups given, but not one per record.
    KeyGroups {
        /// The key groups.
        groups: usize,
        /// The records (timestamps).
        records: usize,
    },
}

impl fmt::Display for MalformedBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("malformed batch: ")?;
        match self {
            Self::EndCount {
                column,
                ends,
                records,
            } => write!(f, "{ends} {column} ends for {records} timestamps"),
            Self::Decreasing {
                column,
                index,
                end,
                previous,
            } => write!(
                f,
                "{column} end {index} is {end}, before the previous end {previous}"
            ),
            Self::PastColumn { column, end, bytes } => {
                write!(
                    f,
                    "{column} ends reach {end}, past the {bytes} bytes of {column}s"
                )
            }
            Self::KeyGroups { groups, records } => {
                write!(f, "{groups} key groups for {records} timestamps")
            }
        }
    }
}

impl std::error::Error for MalformedBatch {}

#[inline]
fn check_ends(
    column: &'static str,
    ends: &[u32],
    bytes: usize,
    records: usize,
) -> Result<(), MalformedBatch> {
    if ends.len() != records {
        let ends = ends.len();
        return Err(MalformedBatch::EndCount {
            column,
            ends,
            records,
        });
    }
    let mut previous = 0;
    for (index, &end) in ends.iter().enumerate() {
        if end < previous {
            return Err(MalformedBatch::Decreasing {
                column,
                index,
                end,
                previous,
            });
        }
        previous = end;
    }
    if previous as usize > bytes {
        let end = previous;
        return Err(MalformedBatch::PastColumn { column, end, bytes });
    }
    Ok(())
}

/// Record `i`'s bytes in `column`; the ends have been checked by [`Records::new`].
#[inline]
fn slice<'a>(column: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = i
        .checked_sub(1)
        .map_or(0, |previous| ends[previous] as usize);
    &column[start..ends[i] as usize]
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    #[inline]
    fn next(&mut self) -> Option<Record<'a>> {
        let i = self.next;
        let timestamp = *self.columns.timestamps.get(i)?;
        self.next += 1;
        Some(Record {
            key: slice(self.columns.keys, self.columns.key_ends, i),
            value: slice(self.columns.values, self.columns.value_ends, i),
            timestamp,
            key_group: self.columns.key_groups.get(i).copied(),
        })
    }

    #[inline]
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.columns.timestamps.len() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Records<'_> {}

impl FusedIterator for Records<'_> {}

/// The five columns of a batch, owned: what [`BatchBuilder::finish`] produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchParts {
    /// All keys, end to end.
    pub keys: Vec<u8>,
    /// The end offset in `keys` of each record's key.
    pub key_ends: Vec<u32>,
    /// All values, end to end.
    pub values: Vec<u8>,
    /// The end offset in `values` of each record's value.
    pub value_ends: Vec<u32>,
    /// Each record's timestamp.
    pub timestamps: Vec<i64>,
}

impl BatchParts {
    /// Borrows the columns (no key groups).
    #[inline]
    pub fn columns(&self) -> Columns<'_> {
        Columns {
            keys: &self.keys,
            key_ends: &self.key_ends,
            values: &self.values,
            value_ends: &self.value_ends,
            timestamps: &self.timestamps,
            key_groups: &[],
        }
    }
}

/// Builds a batch one record at a time.
#[derive(Debug, Clone, Default)]
pub struct BatchBuilder {
    parts: BatchParts,
}

impl BatchBuilder {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a record; fails only if a column would outgrow the 32-bit offsets.
    #[inline]
    pub fn push(&mut self, key: &[u8], value: &[u8], timestamp: i64) -> Result<(), String> {
        let parts = &mut self.parts;
        let key_end = end_after(&parts.keys, key, "key")?;
        let value_end = end_after(&parts.values, value, "value")?;
        parts.keys.extend_from_slice(key);
        parts.key_ends.push(key_end);
        parts.values.extend_from_slice(value);
        parts.value_ends.push(value_end);
        parts.timestamps.push(timestamp);
        Ok(())
    }

    /// Appends a record whose value `write_value` writes straight into the batch (no buffer
    /// of its own per record); fails only if a column would outgrow the 32-bit offsets.
    #[inline]
    pub fn push_with(
        &mut self,
        key: &[u8],
        timestamp: i64,
        write_value: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), String> {
        let parts = &mut self.parts;
        let key_end = end_after(&parts.keys, key, "key")?;
        write_value(&mut parts.values);
        let value_end = u32::try_from(parts.values.len())
            .map_err(|_| "batch too large: its values would exceed 4 GiB".to_owned())?;
        parts.keys.extend_from_slice(key);
        parts.key_ends.push(key_end);
        parts.value_ends.push(value_end);
        parts.timestamps.push(timestamp);
        Ok(())
    }

    /// The number of records pushed so far.
    pub fn len(&self) -> usize {
        self.parts.timestamps.len()
    }

    /// Whether no record has been pushed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The batch's columns.
    pub fn finish(self) -> BatchParts {
        self.parts
    }
}

#[inline]
fn end_after(column: &[u8], bytes: &[u8], name: &str) -> Result<u32, String> {
    u32::try_from(column.len() + bytes.len())
        .map_err(|_| format!("batch too large: its {name}s would exceed 4 GiB"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn columns<'a>(
        keys: &'a [u8],
        key_ends: &'a [u32],
        values: &'a [u8],
        value_ends: &'a [u32],
        timestamps: &'a [i64],
    ) -> Columns<'a> {
        Columns {
            keys,
            key_ends,
            values,
            value_ends,
            timestamps,
            key_groups: &[],
        }
    }

    #[test]
    fn push_with_writes_the_value_in_place_and_key_groups_reach_records() {
        let mut builder = BatchBuilder::new();
        builder
            .push_with(b"k", 3, |v| v.extend_from_slice(b"k 12"))
            .unwrap();
        builder.push(b"", b"x", 4).unwrap();
        let parts = builder.finish();
        assert_eq!(
            (&parts.value_ends[..], &parts.values[..]),
            (&[4, 5][..], &b"k 12x"[..])
        );
        let groups = [7, 9];
        let mut columns = parts_columns(&parts);
        columns.key_groups = &groups;
        let records: Vec<_> = Records::new(columns)
            .unwrap()
            .map(|r| r.key_group)
            .collect();
        assert_eq!(records, [Some(7), Some(9)]);
        columns.key_groups = &groups[..1];
        assert_eq!(
            Records::new(columns).unwrap_err(),
            MalformedBatch::KeyGroups {
                groups: 1,
                records: 2
            }
        );
    }

    fn parts_columns(parts: &BatchParts) -> Columns<'_> {
        parts.columns()
    }

    #[test]
    fn builder_and_reader_round_trip() {
        let input: [(&[u8], &[u8], i64); 4] = [
            (b"a", b"one", 1),
            (b"", b"", -2),
            (b"ccc", b"", 3),
            (b"", b"four", i64::MAX),
        ];
        let mut builder = BatchBuilder::new();
        for (key, value, timestamp) in input {
            builder.push(key, value, timestamp).unwrap();
        }
        assert_eq!(builder.len(), 4);
        let parts = builder.finish();
        assert_eq!(parts.keys, b"accc");
        assert_eq!(parts.key_ends, [1, 1, 4, 4]);
        assert_eq!(parts.value_ends, [3, 3, 3, 7]);

        let read = Records::new(parts.columns()).unwrap();
        assert_eq!(read.len(), 4);
        let read: Vec<_> = read.map(|r| (r.key, r.value, r.timestamp)).collect();
        assert_eq!(read, input);
    }

    #[test]
    fn empty_batch_has_no_records() {
        assert!(BatchBuilder::new().is_empty());
        assert_eq!(
            Records::new(BatchBuilder::new().finish().columns())
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn malformed_ends_are_errors() {
        let cases = [
            (
                columns(b"ab", &[1], b"", &[0, 0], &[0, 0]),
                "1 key ends for 2 timestamps",
            ),
            (
                columns(b"ab", &[1, 2], b"", &[0], &[0, 0]),
                "1 value ends for 2 timestamps",
            ),
            (
                columns(b"ab", &[2, 1], b"", &[0, 0], &[0, 0]),
                "key end 1 is 1, before the previous end 2",
            ),
            (
                columns(b"ab", &[1, 3], b"", &[0, 0], &[0, 0]),
                "key ends reach 3, past the 2 bytes of keys",
            ),
            (
                columns(b"", &[0], b"xyz", &[4], &[0]),
                "value ends reach 4, past the 3 bytes of values",
            ),
            (
                columns(b"", &[u32::MAX], b"", &[0], &[0]),
                "past the 0 bytes of keys",
            ),
        ];
        for (columns, expected) in cases {
            let error = Records::new(columns).unwrap_err().to_string();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }
}
