//! How a record becomes a row: the table's `key` and `value` columns take the record's key
//! and value (`text` or `varchar`: UTF-8, else refused; `bytea`: the bytes as they are), and
//! its `ts` column the record's timestamp (`bigint`: milliseconds since the Unix epoch;
//! `timestamptz` or `timestamp`: that instant). The types are the table's own, as the server
//! reports them for an `INSERT` of those three columns; other columns take their defaults.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::types::{ToSql, Type};

use super::super::Cause;

/// What a `key` or `value` column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bytes {
    /// UTF-8 text.
    Text,
    /// Bytes.
    Binary,
}

/// What the `ts` column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    /// Milliseconds since the Unix epoch.
    Millis,
    /// An instant.
    Instant,
}

/// The table's three columns, as the sink writes them.
#[derive(Clone, Debug)]
pub struct Columns {
    /// `key`.
    pub key: Bytes,
    /// `value`.
    pub value: Bytes,
    /// `ts`.
    pub ts: Time,
    /// Their types, for `COPY ... BINARY`.
    pub types: [Type; 3],
}

impl Columns {
    /// The columns of a table whose `INSERT (key, value, ts)` takes `types`; or which one the
    /// sink cannot write.
    pub fn of(types: &[Type]) -> Result<Columns, String> {
        let [key, value, ts] = types else {
            return Err(format!("expected 3 columns, found {}", types.len()));
        };
        let bytes = |name: &str, t: &Type| match *t {
            Type::TEXT | Type::VARCHAR => Ok(Bytes::Text),
            Type::BYTEA => Ok(Bytes::Binary),
            _ => Err(format!(
                "column `{name}` is {t}: the sink writes text, varchar or bytea"
            )),
        };
        let ts_kind = match *ts {
            Type::INT8 => Time::Millis,
            Type::TIMESTAMPTZ | Type::TIMESTAMP => Time::Instant,
            _ => {
                return Err(format!(
                    "column `ts` is {ts}: the sink writes bigint (milliseconds) or timestamptz"
                ));
            }
        };
        Ok(Columns {
            key: bytes("key", key)?,
            value: bytes("value", value)?,
            ts: ts_kind,
            types: [key.clone(), value.clone(), ts.clone()],
        })
    }

    /// The parameters of one row, borrowing the record's bytes.
    pub fn row<'a>(&self, key: &'a [u8], value: &'a [u8], ts: i64) -> Result<Row<'a>, Cause> {
        Ok(Row {
            key: field(self.key, key, "key")?,
            value: field(self.value, value, "value")?,
            ts: match self.ts {
                Time::Millis => TimeField::Millis(ts),
                Time::Instant => TimeField::Instant(instant(ts)),
            },
        })
    }
}

/// One row's parameters.
pub struct Row<'a> {
    key: Field<'a>,
    value: Field<'a>,
    ts: TimeField,
}

enum Field<'a> {
    Text(&'a str),
    Binary(&'a [u8]),
}

enum TimeField {
    Millis(i64),
    Instant(SystemTime),
}

impl Row<'_> {
    /// The parameters, in column order `key, value, ts`.
    pub fn params(&self) -> [&(dyn ToSql + Sync); 3] {
        let ts: &(dyn ToSql + Sync) = match &self.ts {
            TimeField::Millis(ms) => ms,
            TimeField::Instant(at) => at,
        };
        [self.key.param(), self.value.param(), ts]
    }
}

impl Field<'_> {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Field::Text(text) => text,
            Field::Binary(bytes) => bytes,
        }
    }
}

fn field<'a>(kind: Bytes, bytes: &'a [u8], column: &str) -> Result<Field<'a>, Cause> {
    match kind {
        Bytes::Binary => Ok(Field::Binary(bytes)),
        Bytes::Text => std::str::from_utf8(bytes).map(Field::Text).map_err(|_| {
            Cause::Record(format!(
                "a record's {column} is not UTF-8, and column `{column}` holds text: make it bytea"
            ))
        }),
    }
}

/// The instant `ms` milliseconds from the Unix epoch (before it when negative).
fn instant(ms: i64) -> SystemTime {
    let offset = Duration::from_millis(ms.unsigned_abs());
    match ms >= 0 {
        true => UNIX_EPOCH + offset,
        false => UNIX_EPOCH - offset,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_bytea_bigint_and_timestamptz_columns_are_written_and_others_refused() {
        let columns = Columns::of(&[Type::TEXT, Type::BYTEA, Type::INT8]).unwrap();
        assert_eq!((columns.key, columns.value), (Bytes::Text, Bytes::Binary));
        assert_eq!(columns.ts, Time::Millis);
        assert!(columns.row(b"\xff", b"x", 1).is_err());
        assert!(columns.row(b"k", b"\xff", 1).is_ok());
        let instant = Columns::of(&[Type::VARCHAR, Type::TEXT, Type::TIMESTAMPTZ]).unwrap();
        assert_eq!(instant.ts, Time::Instant);
        let refused = Columns::of(&[Type::INT4, Type::TEXT, Type::INT8]).unwrap_err();
        assert!(refused.contains("column `key` is int4"), "{refused}");
        assert!(Columns::of(&[Type::TEXT, Type::TEXT, Type::TEXT]).is_err());
    }

    #[test]
    fn timestamps_before_the_epoch_are_instants_before_it() {
        assert_eq!(instant(-1_500), UNIX_EPOCH - Duration::from_millis(1_500));
        assert_eq!(instant(2_000), UNIX_EPOCH + Duration::from_secs(2));
    }
}
