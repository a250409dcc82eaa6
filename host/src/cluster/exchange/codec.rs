//! A batch as an Arrow record batch, and the frames of an exchange connection.
//!
//! Our batch is Arrow's variable-width binary layout already: a column's bytes, and where
//! each record's bytes end. As an Arrow `Binary` array, the bytes move into an Arrow buffer
//! without a copy and are written to the connection as they are (`StreamEncoder` shares the
//! array's buffers); only the offsets are rebuilt (Arrow's start with a 0 and are `i32`).
//! Receiving copies each column out of the frame once, and checks the batch as every batch a
//! guest returns is checked ([`check_batch`]).
//!
//! Frames: a kind byte, a length (u32 little-endian), a payload.

use std::sync::{Arc, LazyLock};

use arrow_array::{Array, ArrayRef, BinaryArray, Int64Array, RecordBatch, UInt32Array};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamEncoder;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::barrier::Barrier;
use crate::engine::bindings::Batch;
use crate::runtime::channel::Message;
use crate::runtime::partition::check_batch;

/// The largest frame accepted: a batch of [`crate::runtime::subtask::BATCH_RECORDS_MAX`]
/// records of a few hundred bytes each.
pub const FRAME_BYTES_MAX: u32 = 1 << 30;

/// What a frame holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A batch without key groups (Arrow IPC, its own stream).
    Batch = 1,
    /// A batch with a key group per record (Arrow IPC, its own stream).
    Grouped = 2,
    /// A barrier (postcard).
    Barrier = 3,
    /// A watermark (i64 little-endian).
    Watermark = 4,
    /// Idleness.
    Idle = 5,
    /// The end of the channel.
    End = 6,
    /// Receiver to sender: records it may send more of (u32 little-endian).
    Credit = 7,
}

impl Kind {
    /// The kind of byte `b`, if any.
    pub fn of(b: u8) -> Option<Kind> {
        [
            Kind::Batch,
            Kind::Grouped,
            Kind::Barrier,
            Kind::Watermark,
            Kind::Idle,
            Kind::End,
            Kind::Credit,
        ]
        .into_iter()
        .find(|k| *k as u8 == b)
    }
}

/// Why a frame could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Arrow refused it.
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    /// A column of more than 2 GiB (Arrow's `Binary` offsets are `i32`).
    #[error("a {column} column of {bytes} bytes does not fit one Arrow Binary array")]
    TooLarge {
        /// `key` or `value`.
        column: &'static str,
        /// Its bytes.
        bytes: u64,
    },
    /// The batch read back is not a batch the host can read.
    #[error("{0}")]
    Malformed(#[from] jobhost_batch::MalformedBatch),
    /// The record batch does not have the exchange's columns.
    #[error("a record batch without the exchange's columns")]
    Columns,
    /// A frame's payload ends before its message.
    #[error("a {0:?} frame shorter than its message")]
    Short(Kind),
    /// A barrier that does not decode.
    #[error("a barrier that does not decode: {0}")]
    Barrier(#[from] postcard::Error),
}

fn schema(grouped: bool) -> SchemaRef {
    let mut fields = vec![
        Field::new("key", DataType::Binary, false),
        Field::new("value", DataType::Binary, false),
        Field::new("timestamp", DataType::Int64, false),
    ];
    if grouped {
        fields.push(Field::new("key_group", DataType::UInt32, false));
    }
    Arc::new(Schema::new(fields))
}

static PLAIN: LazyLock<SchemaRef> = LazyLock::new(|| schema(false));
static GROUPED: LazyLock<SchemaRef> = LazyLock::new(|| schema(true));

/// A `Binary` array of `bytes` whose records end at `ends`, the bytes moved, not copied.
fn binary(column: &'static str, bytes: Vec<u8>, ends: &[u32]) -> Result<ArrayRef, CodecError> {
    let too_large = || CodecError::TooLarge {
        column,
        bytes: bytes.len() as u64,
    };
    if i32::try_from(bytes.len()).is_err() {
        return Err(too_large());
    }
    let mut offsets = Vec::with_capacity(ends.len() + 1);
    offsets.push(0i32);
    for &end in ends {
        let end = i32::try_from(end).map_err(|_| too_large())?;
        if end < *offsets.last().expect("starts with 0") || end as usize > bytes.len() {
            return Err(jobhost_batch::MalformedBatch::PastColumn {
                column,
                end: end as u32,
                bytes: bytes.len(),
            }
            .into());
        }
        offsets.push(end);
    }
    let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
    Ok(Arc::new(BinaryArray::try_new(
        offsets,
        Buffer::from_vec(bytes),
        None,
    )?))
}

/// The batch as a record batch (its columns moved), and whether it carries key groups.
pub fn to_record_batch(batch: Batch) -> Result<(RecordBatch, bool), CodecError> {
    let grouped = !batch.key_groups.is_empty();
    let mut columns = vec![
        binary("key", batch.keys, &batch.key_ends)?,
        binary("value", batch.values, &batch.value_ends)?,
        Arc::new(Int64Array::new(batch.timestamps.into(), None)) as ArrayRef,
    ];
    if grouped {
        columns.push(Arc::new(UInt32Array::new(batch.key_groups.into(), None)));
    }
    let schema = if grouped { &GROUPED } else { &PLAIN };
    Ok((RecordBatch::try_new((*schema).clone(), columns)?, grouped))
}

/// A `Binary` column's bytes and record ends, copied out once.
fn column(array: &ArrayRef) -> Result<(Vec<u8>, Vec<u32>), CodecError> {
    let array = array
        .as_any()
        .downcast_ref::<BinaryArray>()
        .ok_or(CodecError::Columns)?;
    let offsets = array.value_offsets();
    let (first, last) = (offsets[0] as usize, offsets[offsets.len() - 1] as usize);
    let bytes = array.value_data()[first..last].to_vec();
    let ends = offsets[1..].iter().map(|&o| (o as usize - first) as u32);
    Ok((bytes, ends.collect()))
}

/// The batch a record batch read back holds, checked.
pub fn from_record_batch(batch: &RecordBatch) -> Result<Batch, CodecError> {
    let columns = batch.columns();
    if columns.len() < 3 {
        return Err(CodecError::Columns);
    }
    let (keys, key_ends) = column(&columns[0])?;
    let (values, value_ends) = column(&columns[1])?;
    let timestamps = columns[2]
        .as_any()
        .downcast_ref::<Int64Array>()
        .ok_or(CodecError::Columns)?;
    let key_groups = match columns.get(3) {
        Some(groups) => {
            let groups = groups.as_any().downcast_ref::<UInt32Array>();
            groups.ok_or(CodecError::Columns)?.values().to_vec()
        }
        None => Vec::new(),
    };
    let batch = Batch {
        keys,
        key_ends,
        values,
        value_ends,
        timestamps: timestamps.values().to_vec(),
        key_groups,
    };
    check_batch(&batch)?;
    Ok(batch)
}

/// One connection's encoders (a stream per kind of batch, each with its schema once).
#[derive(Default)]
pub struct Encoder {
    plain: Option<StreamEncoder>,
    grouped: Option<StreamEncoder>,
}

impl Encoder {
    /// The frame kind and the buffers of `batch`'s IPC message (preceded by its stream's
    /// schema the first time), to be written in order.
    pub fn batch(&mut self, batch: Batch) -> Result<(Kind, Vec<Buffer>), CodecError> {
        let (record_batch, grouped) = to_record_batch(batch)?;
        let (slot, kind) = if grouped {
            (&mut self.grouped, Kind::Grouped)
        } else {
            (&mut self.plain, Kind::Batch)
        };
        let encoder = match slot {
            Some(encoder) => encoder,
            None => slot.insert(StreamEncoder::try_new(&record_batch.schema())?),
        };
        Ok((kind, encoder.encode(&record_batch)?))
    }
}

/// One connection's decoders.
#[derive(Default)]
pub struct Decoder {
    plain: StreamDecoder,
    grouped: StreamDecoder,
}

impl Decoder {
    /// The batch a frame of kind `kind` (a batch kind) holds.
    pub fn batch(&mut self, kind: Kind, payload: Vec<u8>) -> Result<Batch, CodecError> {
        let decoder = match kind {
            Kind::Grouped => &mut self.grouped,
            _ => &mut self.plain,
        };
        let mut buffer = Buffer::from_vec(payload);
        while !buffer.is_empty() {
            if let Some(batch) = decoder.decode(&mut buffer)? {
                return from_record_batch(&batch);
            }
        }
        Err(CodecError::Short(kind))
    }
}

/// The kind and payload of a frame carrying `message`, other than a batch.
pub fn control(message: &Message) -> (Kind, Vec<u8>) {
    match message {
        Message::Barrier(barrier) => (
            Kind::Barrier,
            postcard::to_stdvec(barrier).expect("a barrier serializes"),
        ),
        Message::Watermark(watermark) => (Kind::Watermark, watermark.to_le_bytes().to_vec()),
        Message::Idle => (Kind::Idle, Vec::new()),
        Message::End => (Kind::End, Vec::new()),
        Message::Batch(_) => unreachable!("batches are encoded by an Encoder"),
    }
}

/// The message a control frame holds.
pub fn decode_control(kind: Kind, payload: &[u8]) -> Result<Message, CodecError> {
    Ok(match kind {
        Kind::Barrier => Message::Barrier(postcard::from_bytes::<Barrier>(payload)?),
        Kind::Watermark => {
            let bytes = payload.try_into().map_err(|_| CodecError::Short(kind))?;
            Message::Watermark(i64::from_le_bytes(bytes))
        }
        Kind::Idle => Message::Idle,
        Kind::End => Message::End,
        Kind::Batch | Kind::Grouped | Kind::Credit => unreachable!("not a control frame"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_batch::BatchBuilder;

    fn batch(records: &[(&[u8], &[u8], i64)], groups: Vec<u32>) -> Batch {
        let mut builder = BatchBuilder::new();
        for &(key, value, timestamp) in records {
            builder.push(key, value, timestamp).unwrap();
        }
        crate::runtime::partition::into_batch(builder.finish(), groups)
    }

    type Parts = (Vec<u8>, Vec<u32>, Vec<u8>, Vec<u32>, Vec<i64>, Vec<u32>);

    fn parts(b: &Batch) -> Parts {
        let b = b.clone();
        (
            b.keys,
            b.key_ends,
            b.values,
            b.value_ends,
            b.timestamps,
            b.key_groups,
        )
    }

    fn cross(encoder: &mut Encoder, decoder: &mut Decoder, sent: &Batch) -> Batch {
        let (kind, buffers) = encoder.batch(sent.clone()).unwrap();
        let payload: Vec<u8> = buffers.iter().flat_map(|b| b.as_slice().to_vec()).collect();
        decoder.batch(kind, payload).unwrap()
    }

    #[test]
    fn batches_cross_whole_with_and_without_key_groups_on_one_connection() {
        let (mut encoder, mut decoder) = (Encoder::default(), Decoder::default());
        let plain = batch(
            &[(b"a", b"1", 5), (b"", b"", -1), (b"word", b"vv", 7)],
            vec![],
        );
        let grouped = batch(&[(b"x", b"yy", 1), (b"zz", b"", 2)], vec![3, 90]);
        for sent in [&plain, &grouped, &plain, &grouped] {
            assert_eq!(parts(&cross(&mut encoder, &mut decoder, sent)), parts(sent));
        }
    }

    #[test]
    fn control_messages_round_trip() {
        let barrier = Barrier {
            checkpoint: crate::ids::CheckpointId(4),
            kind: crate::barrier::BarrierKind::Savepoint,
            then_stop: true,
        };
        for message in [
            Message::Barrier(barrier),
            Message::Watermark(-3),
            Message::Idle,
            Message::End,
        ] {
            let (kind, payload) = control(&message);
            let back = decode_control(kind, &payload).unwrap();
            assert_eq!(format!("{back:?}"), format!("{message:?}"));
        }
    }

    #[test]
    fn a_batch_whose_ends_run_past_its_bytes_is_refused() {
        let mut bad = batch(&[(b"ab", b"", 0)], vec![]);
        bad.key_ends = vec![9];
        assert!(matches!(
            to_record_batch(bad),
            Err(CodecError::Malformed(_))
        ));
    }
}
