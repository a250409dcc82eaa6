//! Columnar batches: reading them as records, building them from records.

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
}

/// A batch laid out by columns; [`batch_type!`](crate::batch_type) implements it for a
/// guest's generated `Batch`.
pub trait ColumnarBatch {
    /// Borrows the batch's columns.
    fn columns(&self) -> Columns<'_>;
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
}

/// Reads `batch` as records, or says how its columns are malformed.
pub fn records<B: ColumnarBatch + ?Sized>(batch: &B) -> Result<Records<'_>, String> {
    Records::new(batch.columns())
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
    pub fn new(columns: Columns<'a>) -> Result<Self, String> {
        let count = columns.timestamps.len();
        check_ends("key", columns.key_ends, columns.keys.len(), count)?;
        check_ends("value", columns.value_ends, columns.values.len(), count)?;
        Ok(Self { columns, next: 0 })
    }
}

fn check_ends(name: &str, ends: &[u32], column_len: usize, count: usize) -> Result<(), String> {
    if ends.len() != count {
        return Err(format!(
            "malformed batch: {} {name} ends for {count} timestamps",
            ends.len()
        ));
    }
    let mut start = 0;
    for (i, &end) in ends.iter().enumerate() {
        if end < start {
            return Err(format!(
                "malformed batch: {name} end {i} is {end}, before the previous end {start}"
            ));
        }
        start = end;
    }
    if start as usize > column_len {
        return Err(format!(
            "malformed batch: {name} ends reach {start}, past the {column_len} bytes of {name}s"
        ));
    }
    Ok(())
}

/// Record `i`'s bytes in `column`; the ends have been checked by [`Records::new`].
fn slice<'a>(column: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = i
        .checked_sub(1)
        .map_or(0, |previous| ends[previous] as usize);
    &column[start..ends[i] as usize]
}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        let i = self.next;
        let timestamp = *self.columns.timestamps.get(i)?;
        self.next += 1;
        Some(Record {
            key: slice(self.columns.keys, self.columns.key_ends, i),
            value: slice(self.columns.values, self.columns.value_ends, i),
            timestamp,
        })
    }

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

impl ColumnarBatch for BatchParts {
    fn columns(&self) -> Columns<'_> {
        Columns {
            keys: &self.keys,
            key_ends: &self.key_ends,
            values: &self.values,
            value_ends: &self.value_ends,
            timestamps: &self.timestamps,
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

fn end_after(column: &[u8], bytes: &[u8], name: &str) -> Result<u32, String> {
    u32::try_from(column.len() + bytes.len())
        .map_err(|_| format!("batch too large: its {name}s would exceed 4 GiB"))
}

/// Connects a guest's generated `Batch` type to this crate: implements [`ColumnarBatch`] for it
/// (so that [`records`] reads it) and `From<BatchBuilder>` (so that a builder turns into it).
///
/// ```
/// // As generated by wit-bindgen from the `batch` record.
/// pub struct Batch {
///     pub keys: Vec<u8>,
///     pub key_ends: Vec<u32>,
///     pub values: Vec<u8>,
///     pub value_ends: Vec<u32>,
///     pub timestamps: Vec<i64>,
/// }
/// jobhost_guest::batch_type!(Batch);
///
/// fn swap(input: &Batch) -> Result<Batch, String> {
///     let mut output = jobhost_guest::BatchBuilder::new();
///     for r in jobhost_guest::records(input)? {
///         output.push(r.value, r.key, r.timestamp)?;
///     }
///     Ok(output.into())
/// }
/// # let mut input = jobhost_guest::BatchBuilder::new();
/// # input.push(b"k", b"value", 7).unwrap();
/// # let swapped = swap(&input.into()).unwrap();
/// # assert_eq!((swapped.keys, swapped.values), (b"value".to_vec(), b"k".to_vec()));
/// ```
#[macro_export]
macro_rules! batch_type {
    ($batch:ty) => {
        impl $crate::ColumnarBatch for $batch {
            fn columns(&self) -> $crate::Columns<'_> {
                $crate::Columns {
                    keys: &self.keys,
                    key_ends: &self.key_ends,
                    values: &self.values,
                    value_ends: &self.value_ends,
                    timestamps: &self.timestamps,
                }
            }
        }

        impl ::core::convert::From<$crate::BatchBuilder> for $batch {
            fn from(builder: $crate::BatchBuilder) -> Self {
                let $crate::BatchParts {
                    keys,
                    key_ends,
                    values,
                    value_ends,
                    timestamps,
                } = builder.finish();
                Self {
                    keys,
                    key_ends,
                    values,
                    value_ends,
                    timestamps,
                }
            }
        }
    };
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
        }
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

        let read = records(&parts).unwrap();
        assert_eq!(read.len(), 4);
        let read: Vec<_> = read.map(|r| (r.key, r.value, r.timestamp)).collect();
        assert_eq!(read, input);
    }

    #[test]
    fn empty_batch_has_no_records() {
        assert!(BatchBuilder::new().is_empty());
        assert_eq!(records(&BatchBuilder::new().finish()).unwrap().count(), 0);
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
            let error = Records::new(columns).unwrap_err();
            assert!(
                error.contains(expected),
                "{error:?} should contain {expected:?}"
            );
        }
    }

    #[test]
    fn batch_type_connects_a_generated_batch() {
        #[derive(Debug, PartialEq)]
        struct Batch {
            keys: Vec<u8>,
            key_ends: Vec<u32>,
            values: Vec<u8>,
            value_ends: Vec<u32>,
            timestamps: Vec<i64>,
        }
        crate::batch_type!(Batch);

        let mut builder = BatchBuilder::new();
        builder.push(b"k", b"v", 9).unwrap();
        let batch: Batch = builder.into();
        let expected = Batch {
            keys: b"k".to_vec(),
            key_ends: vec![1],
            values: b"v".to_vec(),
            value_ends: vec![1],
            timestamps: vec![9],
        };
        assert_eq!(batch, expected);
        let read: Vec<_> = records(&batch).unwrap().collect();
        assert_eq!(
            read,
            [Record {
                key: b"k",
                value: b"v",
                timestamp: 9
            }]
        );
    }
}
