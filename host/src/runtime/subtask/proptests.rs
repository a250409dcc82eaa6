//! Property tests of [`check_returned`]: a guest's batch is whatever the guest put in it, and
//! every batch that passes is read without bounds checks of its own (`Records::of_checked`).

use jobhost_batch::{BatchBuilder, Records};
use proptest::prelude::*;

use super::*;
use crate::fuzz::{explained, mutated};
use crate::runtime::partition::{columns, into_batch};

/// Ends that mostly fall within short columns, and at times anywhere.
fn ends() -> impl Strategy<Value = Vec<u32>> {
    let end = prop_oneof![4 => 0..48u32, 1 => any::<u32>()];
    prop::collection::vec(end, 0..8)
}

fn column() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..48)
}

/// Columns of any lengths and ends.
fn arbitrary_batch() -> impl Strategy<Value = Batch> {
    let timestamps = prop::collection::vec(any::<i64>(), 0..8);
    let key_groups = prop::collection::vec(any::<u32>(), 0..8);
    (column(), ends(), column(), ends(), timestamps, key_groups).prop_map(
        |(keys, key_ends, values, value_ends, timestamps, key_groups)| Batch {
            keys,
            key_ends,
            values,
            value_ends,
            timestamps,
            key_groups,
        },
    )
}

/// Records as a guest produces them: key, value, timestamp.
type Produced = Vec<(Vec<u8>, Vec<u8>, i64)>;

fn produced() -> impl Strategy<Value = Produced> {
    let bytes = prop::collection::vec(any::<u8>(), 0..8);
    prop::collection::vec((bytes.clone(), bytes, any::<i64>()), 0..8)
}

/// `records` built into a batch as a Rust guest's SDK builds it.
fn built(records: &Produced) -> Batch {
    let mut builder = BatchBuilder::new();
    for (key, value, timestamp) in records {
        builder.push(key, value, *timestamp).expect("a small batch");
    }
    into_batch(builder.finish(), Vec::new())
}

/// Column `which` of `batch` as bytes (ends and timestamps little-endian).
fn column_bytes(batch: &Batch, which: usize) -> Vec<u8> {
    let ints = |v: &[u32]| v.iter().flat_map(|n| n.to_le_bytes()).collect();
    match which {
        0 => batch.keys.clone(),
        1 => ints(&batch.key_ends),
        2 => batch.values.clone(),
        3 => ints(&batch.value_ends),
        _ => batch
            .timestamps
            .iter()
            .flat_map(|n| n.to_le_bytes())
            .collect(),
    }
}

/// `batch` with column `which` replaced by `bytes` (whole integers only).
fn with_column(mut batch: Batch, which: usize, bytes: &[u8]) -> Batch {
    let u32s = || {
        bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()))
    };
    match which {
        0 => batch.keys = bytes.to_vec(),
        1 => batch.key_ends = u32s().collect(),
        2 => batch.values = bytes.to_vec(),
        3 => batch.value_ends = u32s().collect(),
        _ => {
            let i64s = bytes.chunks_exact(8);
            batch.timestamps = i64s
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect();
        }
    }
    batch
}

/// A valid batch with one of its columns mutated.
fn mutated_batch() -> impl Strategy<Value = Batch> {
    (produced(), 0..5usize).prop_flat_map(|(records, which)| {
        let batch = built(&records);
        mutated(column_bytes(&batch, which))
            .prop_map(move |bytes| with_column(batch.clone(), which, &bytes))
    })
}

/// Checks `batch`, which must not panic; a refused batch must say why, and an accepted one
/// must read, record by record, within its columns.
fn reads_or_explains(batch: &Batch) -> Result<(), TestCaseError> {
    if let Err(refusal) = check_returned(batch) {
        return explained(&refusal);
    }
    let records: Vec<_> = Records::of_checked(columns(batch)).collect();
    prop_assert_eq!(records.len(), batch.timestamps.len());
    let keys: usize = records.iter().map(|r| r.key.len()).sum();
    let values: usize = records.iter().map(|r| r.value.len()).sum();
    prop_assert!(keys <= batch.keys.len() && values <= batch.values.len());
    Ok(())
}

proptest! {
    #[test]
    fn arbitrary_batches_are_refused_with_a_reason_or_read_within_bounds(
        batch in arbitrary_batch(),
    ) {
        reads_or_explains(&batch)?;
    }

    #[test]
    fn mutated_batches_are_refused_with_a_reason_or_read_within_bounds(
        batch in mutated_batch(),
    ) {
        reads_or_explains(&batch)?;
    }

    #[test]
    fn batches_round_trip(records in produced()) {
        let batch = built(&records);
        prop_assert_eq!(check_returned(&batch), Ok(()));
        let read: Produced = Records::of_checked(columns(&batch))
            .map(|r| (r.key.to_vec(), r.value.to_vec(), r.timestamp))
            .collect();
        prop_assert_eq!(read, records);
    }
}

#[test]
fn a_batch_over_the_record_limit_is_refused_naming_it() {
    let empty = |n: usize| Batch {
        keys: Vec::new(),
        key_ends: vec![0; n],
        values: Vec::new(),
        value_ends: vec![0; n],
        timestamps: vec![0; n],
        key_groups: Vec::new(),
    };
    assert_eq!(check_returned(&empty(BATCH_RECORDS_MAX)), Ok(()));
    let refusal = check_returned(&empty(BATCH_RECORDS_MAX + 1));
    let records = BATCH_RECORDS_MAX + 1;
    assert_eq!(refusal, Err(Malformed::TooManyRecords { records }));
}
