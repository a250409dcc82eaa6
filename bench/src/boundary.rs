//! The cost of a batch crossing the host↔guest boundary, per record: `process` on an operator
//! that returns its input unchanged (so the cost is lowering the batch in and lifting it out),
//! against the same two copies made natively.

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use anyhow::anyhow;
use host::engine::bindings::Batch;
use host::engine::{CacheMode, Engine, Instance, Limits};
use host::topology::Role;

use crate::batches::BatchOf;
use crate::jobs::lone_instance;
use crate::{Row, Sizes};

/// Record size of the measurement: an 8-byte key and an 8-byte value.
fn batch_of(records: usize) -> Batch {
    let mut batch = BatchOf::new(false);
    for i in 0..records as u64 {
        batch.push(&i.to_le_bytes(), &(!i).to_le_bytes(), i as i64);
    }
    batch.finish()
}

/// ns per record through `process` of the `ballast` guest, at batch sizes 1 to 16 384.
pub async fn boundary(guests: &Path, scratch: &Path, sizes: Sizes) -> anyhow::Result<Vec<Row>> {
    let engine = Engine::new(
        &scratch.join("boundary-cache"),
        &scratch.join("boundary-cache.key"),
        CacheMode::ReadWrite,
    )
    .map_err(|e| anyhow!("{e:#}"))?;
    let module = engine.load(&guests.join("ballast.wasm"), Role::Operator)?;
    let mut instance = lone_instance(&engine, &module, "identity", Limits::default()).await?;
    let mut rows = Vec::new();
    for batch_records in [1, 64, 1_024, 16_384] {
        let calls = (sizes.boundary_records / batch_records).max(100);
        rows.push(batch_row(&mut instance, batch_records, calls).await?);
    }
    Ok(rows)
}

/// The row of one batch size: `calls` calls of `process` on a batch of `batch_records`, against
/// as many native copies in and out.
async fn batch_row(
    instance: &mut Instance,
    batch_records: usize,
    calls: usize,
) -> anyhow::Result<Row> {
    let batch = batch_of(batch_records);
    let started = Instant::now();
    for _ in 0..calls {
        black_box(instance.process(&batch).await?);
    }
    let guest_ns = started.elapsed().as_nanos() as f64 / (calls * batch_records) as f64;
    let started = Instant::now();
    for _ in 0..calls {
        let inward = black_box(batch.clone());
        black_box(inward.clone());
    }
    let native_ns = started.elapsed().as_nanos() as f64 / (calls * batch_records) as f64;
    Ok(Row {
        name: format!("boundary cost, batch of {batch_records}"),
        value: guest_ns,
        unit: "ns/record",
        baseline: Some(native_ns),
        baseline_name: "native: the same two copies",
        ratio: Some(native_ns / guest_ns),
        target: if batch_records == 1_024 {
            "≤ 20 ns/record"
        } else {
            ""
        },
        met: (batch_records == 1_024).then_some(guest_ns <= 20.0),
    })
}
