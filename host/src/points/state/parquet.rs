//! Keyed state as a Parquet file, for DuckDB, pandas and the like: columns `key_group`,
//! `key` (a string when every key is UTF-8, else bytes), `version`, then the value: one typed
//! column for a scalar (`value`), one per position for a tuple of scalars (`value_0`,
//! `value_1`, …: word-count v2's `[count, first_seen]`), else `value` as JSON text. The
//! columns follow the shape learnt from every value ([`Shape`]), so each value fits its column.
//!
//! Rows are written in row groups of [`ROW_GROUP_ROWS`]: one row group in memory at a time.
//! Written through parquet's own column writers (no Arrow arrays in between).

use std::io::Write;
use std::sync::Arc;

use parquet::basic::{Compression, LogicalType, Repetition, Type as PhysicalType};
use parquet::data_type::{BoolType, ByteArray, ByteArrayType, DoubleType, Int32Type, Int64Type};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::{SerializedColumnWriter, SerializedFileWriter};
use parquet::schema::types::{ColumnPath, Type};

use super::StateError;
use super::msgpack::Value;
use super::read::json_text;
use super::shape::Shape;

/// Rows held before they are written as one row group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Positions of a tuple given columns of their own; a longer tuple is one JSON column.
const TUPLE_COLUMNS_MAX: usize = 64;

/// What a value column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    UInt64,
    Int64,
    Double,
    Bool,
    Utf8,
    Binary,
    Json,
}

impl Kind {
    /// The column for values of `shape`, if a scalar one.
    fn of(shape: &Shape) -> Option<Kind> {
        Some(match shape {
            Shape::UInt => Kind::UInt64,
            Shape::Int => Kind::Int64,
            Shape::Float => Kind::Double,
            Shape::Bool => Kind::Bool,
            Shape::Str => Kind::Utf8,
            Shape::Bin => Kind::Binary,
            Shape::Optional(inner) => return Kind::of(inner),
            _ => return None,
        })
    }

    fn physical(self) -> PhysicalType {
        match self {
            Kind::UInt64 | Kind::Int64 => PhysicalType::INT64,
            Kind::Double => PhysicalType::DOUBLE,
            Kind::Bool => PhysicalType::BOOLEAN,
            Kind::Utf8 | Kind::Binary | Kind::Json => PhysicalType::BYTE_ARRAY,
        }
    }

    fn logical(self) -> Option<LogicalType> {
        match self {
            Kind::UInt64 => Some(LogicalType::integer(64, false)),
            Kind::Int64 => Some(LogicalType::integer(64, true)),
            Kind::Utf8 => Some(LogicalType::String),
            Kind::Json => Some(LogicalType::Json),
            Kind::Double | Kind::Bool | Kind::Binary => None,
        }
    }
}

/// One value column: its cells of the row group being filled (a null has no cell; `defs` says
/// which rows have one).
struct Column {
    name: String,
    kind: Kind,
    /// The position in a tuple it holds, or the whole value.
    position: Option<usize>,
    ints: Vec<i64>,
    doubles: Vec<f64>,
    bools: Vec<bool>,
    bytes: Vec<ByteArray>,
    defs: Vec<i16>,
}

impl Column {
    fn new(name: String, kind: Kind, position: Option<usize>) -> Column {
        Column {
            name,
            kind,
            position,
            ints: Vec::new(),
            doubles: Vec::new(),
            bools: Vec::new(),
            bytes: Vec::new(),
            defs: Vec::new(),
        }
    }

    /// Adds the cell of `value` (null where it holds none of this column's kind).
    fn push(&mut self, value: &Value) {
        let value = match (self.position, value) {
            (None, value) => Some(value),
            (Some(i), Value::Array(items)) => items.get(i),
            (Some(_), _) => None,
        };
        let held = match (self.kind, value) {
            (_, None | Some(Value::Nil)) => false,
            (Kind::Json, Some(v)) => {
                push(&mut self.bytes, ByteArray::from(json_text(v).into_bytes()))
            }
            (Kind::UInt64, Some(Value::UInt(n))) => push(&mut self.ints, *n as i64),
            (Kind::Int64, Some(Value::UInt(n))) => push(&mut self.ints, *n as i64),
            (Kind::Int64, Some(Value::Int(n))) => push(&mut self.ints, *n),
            (Kind::Double, Some(Value::F64(x))) => push(&mut self.doubles, *x),
            (Kind::Double, Some(Value::F32(x))) => push(&mut self.doubles, f64::from(*x)),
            (Kind::Double, Some(Value::UInt(n))) => push(&mut self.doubles, *n as f64),
            (Kind::Double, Some(Value::Int(n))) => push(&mut self.doubles, *n as f64),
            (Kind::Bool, Some(Value::Bool(b))) => push(&mut self.bools, *b),
            (Kind::Utf8, Some(Value::Str(s))) => push(&mut self.bytes, ByteArray::from(s.as_str())),
            (Kind::Binary, Some(Value::Bin(b))) => {
                push(&mut self.bytes, ByteArray::from(b.clone()))
            }
            _ => false,
        };
        self.defs.push(i16::from(held));
    }
}

impl Column {
    /// Writes the cells held into the row group's column `writer`; returns how many.
    fn write(&self, writer: &mut SerializedColumnWriter<'_>) -> Result<usize, StateError> {
        let defs = Some(&self.defs[..]);
        Ok(match self.kind {
            Kind::UInt64 | Kind::Int64 => writer
                .typed::<Int64Type>()
                .write_batch(&self.ints, defs, None)?,
            Kind::Double => writer
                .typed::<DoubleType>()
                .write_batch(&self.doubles, defs, None)?,
            Kind::Bool => writer
                .typed::<BoolType>()
                .write_batch(&self.bools, defs, None)?,
            Kind::Utf8 | Kind::Binary | Kind::Json => {
                writer
                    .typed::<ByteArrayType>()
                    .write_batch(&self.bytes, defs, None)?
            }
        })
    }
}

fn push<T>(cells: &mut Vec<T>, cell: T) -> bool {
    cells.push(cell);
    true
}

/// The value columns for values of `shape`.
fn value_columns(shape: &Shape) -> Vec<Column> {
    let inner = match shape {
        Shape::Optional(inner) => inner,
        shape => shape,
    };
    match (Kind::of(shape), inner) {
        (Some(kind), _) => vec![Column::new("value".into(), kind, None)],
        (None, Shape::Tuple(shapes)) if shapes.len() <= TUPLE_COLUMNS_MAX => shapes
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Column::new(
                    format!("value_{i}"),
                    Kind::of(s).unwrap_or(Kind::Json),
                    Some(i),
                )
            })
            .collect(),
        _ => vec![Column::new("value".into(), Kind::Json, None)],
    }
}

/// A Parquet file being written, row by row.
pub struct ParquetRows<W: Write + Send> {
    writer: SerializedFileWriter<W>,
    key_groups: Vec<i32>,
    keys: Vec<ByteArray>,
    versions: Vec<i32>,
    values: Vec<Column>,
}

impl<W: Write + Send> ParquetRows<W> {
    /// A file into `out` for values of `shape`, keys as strings if `keys_utf8`, with these
    /// key-value pairs in its footer.
    pub fn new(
        out: W,
        shape: &Shape,
        keys_utf8: bool,
        metadata: Vec<(String, String)>,
    ) -> Result<Self, StateError> {
        let values = value_columns(shape);
        let schema = schema(&values, keys_utf8)?;
        let properties = properties(metadata);
        let writer = SerializedFileWriter::new(out, Arc::new(schema), Arc::new(properties))?;
        Ok(ParquetRows {
            writer,
            key_groups: Vec::new(),
            keys: Vec::new(),
            versions: Vec::new(),
            values,
        })
    }

    /// Adds a row; writes a row group once [`ROW_GROUP_ROWS`] are held.
    pub fn push(
        &mut self,
        group: u32,
        key: &[u8],
        version: u32,
        value: &Value,
    ) -> Result<(), StateError> {
        // Both fit: key groups are below 32 768, and versions are stored as unsigned 32 bits.
        self.key_groups.push(group as i32);
        self.keys.push(ByteArray::from(key.to_vec()));
        self.versions.push(version as i32);
        self.values.iter_mut().for_each(|column| column.push(value));
        if self.keys.len() >= ROW_GROUP_ROWS {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes the rows held as a row group.
    fn flush(&mut self) -> Result<(), StateError> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let mut group = self.writer.next_row_group()?;
        let mut index = 0;
        while let Some(mut writer) = group.next_column()? {
            let _rows = match index {
                0 => writer
                    .typed::<Int32Type>()
                    .write_batch(&self.key_groups, None, None)?,
                1 => writer
                    .typed::<ByteArrayType>()
                    .write_batch(&self.keys, None, None)?,
                2 => writer
                    .typed::<Int32Type>()
                    .write_batch(&self.versions, None, None)?,
                n => self.values[n - 3].write(&mut writer)?,
            };
            writer.close()?;
            index += 1;
        }
        group.close()?;
        self.key_groups.clear();
        self.keys.clear();
        self.versions.clear();
        for column in &mut self.values {
            let name = std::mem::take(&mut column.name);
            *column = Column::new(name, column.kind, column.position);
        }
        Ok(())
    }

    /// Writes the last row group and the footer.
    pub fn finish(mut self) -> Result<(), StateError> {
        self.flush()?;
        self.writer.close()?;
        Ok(())
    }
}

/// The file's schema: the key group, the key (a string if `keys_utf8`), the version, then the
/// value's `columns`, which may be empty.
fn schema(columns: &[Column], keys_utf8: bool) -> Result<Type, StateError> {
    let field = |name: &str, physical, logical, repetition| {
        Type::primitive_type_builder(name, physical)
            .with_repetition(repetition)
            .with_logical_type(logical)
            .build()
            .map(Arc::new)
    };
    let key_logical = keys_utf8.then_some(LogicalType::String);
    let mut fields = vec![
        field(
            "key_group",
            PhysicalType::INT32,
            Some(LogicalType::integer(32, false)),
            Repetition::REQUIRED,
        )?,
        field(
            "key",
            PhysicalType::BYTE_ARRAY,
            key_logical,
            Repetition::REQUIRED,
        )?,
        field(
            "version",
            PhysicalType::INT32,
            Some(LogicalType::integer(32, false)),
            Repetition::REQUIRED,
        )?,
    ];
    for column in columns {
        let kind = column.kind;
        fields.push(field(
            &column.name,
            kind.physical(),
            kind.logical(),
            Repetition::OPTIONAL,
        )?);
    }
    Ok(Type::group_type_builder("state")
        .with_fields(fields)
        .build()?)
}

/// How the file is written, with these key-value pairs in its footer.
fn properties(metadata: Vec<(String, String)>) -> WriterProperties {
    let metadata = metadata
        .into_iter()
        .map(|(k, v)| KeyValue::new(k, v))
        .collect();
    // Dictionaries for the key groups and versions (few values, many rows) only: keys are
    // unique, and values mostly so, where a dictionary is all cost.
    let mut properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_dictionary_enabled(false)
        .set_key_value_metadata(Some(metadata));
    for column in ["key_group", "version"] {
        properties = properties.set_column_dictionary_enabled(ColumnPath::from(column), true);
    }
    properties.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::file::reader::{FileReader, SerializedFileReader};

    fn rows_of(bytes: Vec<u8>) -> Vec<String> {
        let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).unwrap();
        let rows = reader.get_row_iter(None).unwrap();
        rows.map(|row| row.unwrap().to_string()).collect()
    }

    #[test]
    fn counts_are_an_unsigned_column_and_pairs_two_columns() {
        let mut out = Vec::new();
        let mut rows = ParquetRows::new(&mut out, &Shape::UInt, true, vec![]).unwrap();
        rows.push(0, b"apple", 1, &Value::UInt(u64::MAX)).unwrap();
        rows.finish().unwrap();
        assert_eq!(
            rows_of(out),
            [r#"{key_group: 0, key: "apple", version: 1, value: 18446744073709551615}"#]
        );
        let pair = Shape::Tuple(vec![Shape::UInt, Shape::Optional(Box::new(Shape::UInt))]);
        let mut out = Vec::new();
        let mut rows = ParquetRows::new(&mut out, &pair, false, vec![]).unwrap();
        let v2 = |first| Value::Array(vec![Value::UInt(3), first]);
        rows.push(5, &[0xff], 2, &v2(Value::Nil)).unwrap();
        rows.push(5, b"b", 2, &v2(Value::UInt(7))).unwrap();
        rows.finish().unwrap();
        let got = rows_of(out);
        assert!(
            got[0].ends_with("version: 2, value_0: 3, value_1: null}"),
            "{got:?}"
        );
        assert!(got[1].ends_with("value_0: 3, value_1: 7}"), "{got:?}");
    }

    #[test]
    fn values_of_any_kind_are_json_text() {
        let mut out = Vec::new();
        let mut rows = ParquetRows::new(&mut out, &Shape::Any, true, vec![]).unwrap();
        rows.push(1, b"k", 1, &Value::Bin(vec![1])).unwrap();
        rows.finish().unwrap();
        // (The row's text shows the column's string unescaped.)
        let got = rows_of(out);
        assert_eq!(
            got,
            [r#"{key_group: 1, key: "k", version: 1, value: "{"$bin":"AQ=="}"}"#]
        );
    }
}
