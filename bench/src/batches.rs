//! Batches for the guests the benchmarks call directly, built as the host builds them.

use crate::jobs::MAX_PARALLELISM;

/// A batch for a guest, built one record at a time through the codec the host and the guests
/// share; with `keyed`, each record carries its key's group, as over a key-by edge.
pub struct BatchOf {
    builder: jobhost_batch::BatchBuilder,
    groups: Vec<u32>,
    keyed: bool,
}

impl BatchOf {
    /// An empty batch.
    pub fn new(keyed: bool) -> BatchOf {
        BatchOf {
            builder: jobhost_batch::BatchBuilder::new(),
            groups: Vec::new(),
            keyed,
        }
    }

    /// Appends a record.
    pub fn push(&mut self, key: &[u8], value: &[u8], timestamp: i64) {
        self.builder
            .push(key, value, timestamp)
            .expect("a benchmark batch fits its offsets");
        if self.keyed {
            self.groups
                .push(host::key_group::key_group(key, MAX_PARALLELISM));
        }
    }

    /// The records pushed so far.
    pub fn len(&self) -> usize {
        self.builder.len()
    }

    /// The batch.
    pub fn finish(self) -> host::engine::bindings::Batch {
        host::runtime::partition::into_batch(self.builder.finish(), self.groups)
    }
}
