//! The capture: a sink that keeps what it is given in memory, for `host shadow`, which puts
//! one in place of every sink of the jobs it runs so that a shadow run writes nothing outside.
//! Never in a job file: a shadow run builds it into the plan itself. It restores from any
//! sink's state (and ignores it: it reconciles no outside world), and snapshots none.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use crate::engine::bindings::Batch;

/// Its name, recorded as its module name in the points a shadow run writes.
pub const NAME: &str = "jobhost:capture";
/// Its state format: it has none.
pub const STATE_VERSION: u8 = 1;

/// One record a capture took.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its key.
    pub key: Vec<u8>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its timestamp.
    pub timestamp: i64,
}

/// What every subtask of one sink took, by subtask, in the order each took it; shared by the
/// plan's configuration (cloned with it) and whoever reads it after the run.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<BTreeMap<u32, Vec<Record>>>>);

impl Captured {
    /// What was taken so far, by subtask.
    pub fn records(&self) -> BTreeMap<u32, Vec<Record>> {
        self.0.lock().expect("not poisoned").clone()
    }

    fn take(&self, subtask: u32, batch: &Batch) {
        let columns = crate::runtime::partition::columns(batch);
        let records = jobhost_batch::Records::of_checked(columns).map(|r| Record {
            key: r.key.to_vec(),
            value: r.value.to_vec(),
            timestamp: r.timestamp,
        });
        let mut taken = self.0.lock().expect("not poisoned");
        taken.entry(subtask).or_default().extend(records);
    }
}

/// Two captures are the same configuration when they share their records.
impl PartialEq for Captured {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Captured {}

impl fmt::Debug for Captured {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Captured")
    }
}

/// One subtask's capture.
pub struct Sink {
    index: u32,
    captured: Captured,
}

impl Sink {
    /// Subtask `index`'s capture into `captured`.
    pub fn new(index: u32, captured: &Captured) -> Sink {
        Sink {
            index,
            captured: captured.clone(),
        }
    }

    /// Takes a batch (already checked by the runtime).
    pub(in crate::connectors) fn write(&mut self, batch: &Batch) {
        self.captured.take(self.index, batch);
    }
}
