//! Batches in the SDK: the columns, records and builder of the codec the host shares
//! ([`jobhost_batch`]), and [`ColumnarBatch`], which the generated `Batch` of a guest
//! implements.

pub use jobhost_batch::{BatchBuilder, BatchParts, Columns, Record, Records};

/// A batch laid out by columns: the SDK implements it for the `Batch` of its bindings, and
/// [`BatchParts`] for a batch taken apart.
pub trait ColumnarBatch {
    /// Borrows the batch's columns.
    fn columns(&self) -> Columns<'_>;
}

/// Reads `batch` as records, or says how its columns are malformed.
pub fn records<B: ColumnarBatch + ?Sized>(batch: &B) -> Result<Records<'_>, String> {
    Records::new(batch.columns()).map_err(|e| e.to_string())
}

impl ColumnarBatch for BatchParts {
    fn columns(&self) -> Columns<'_> {
        BatchParts::columns(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_batch_converts_both_ways() {
        let mut builder = BatchBuilder::new();
        builder.push(b"k", b"v", 9).unwrap();
        let mut batch: crate::Batch = builder.into();
        assert_eq!(
            (
                &batch.keys[..],
                &batch.key_ends[..],
                &batch.values[..],
                &batch.timestamps[..]
            ),
            (&b"k"[..], &[1][..], &b"v"[..], &[9][..])
        );
        assert!(batch.key_groups.is_empty());
        batch.key_groups = vec![66];
        let read: Vec<_> = records(&batch).unwrap().collect();
        assert_eq!(
            read,
            [Record {
                key: b"k",
                value: b"v",
                timestamp: 9,
                key_group: Some(66),
            }]
        );
    }
}
