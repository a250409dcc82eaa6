//! The rows `host state write` and `bootstrap` take: JSON lines, one key a line, as `host
//! state read` writes them (`{"key": …, "value": …}`, with `key_group` and `version` optional
//! and checked). Every problem names the file and line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::StateError;
use super::json::{from_json, key_from_json};
use super::msgpack::Value;

/// Fields a row may have.
const FIELDS: [&str; 4] = ["key", "value", "key_group", "version"];

/// One row of an input file.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Row {
    /// Its line, from 1.
    pub line: usize,
    /// The key's bytes.
    pub key: Vec<u8>,
    /// The value (none in a file of keys to delete).
    pub value: Option<Value>,
    /// The key group the row says the key is in.
    pub key_group: Option<u32>,
    /// The version the row says its value is of.
    pub version: Option<u32>,
}

/// What a file holds: keys and values to upsert, or keys to delete (a value, if given, is
/// not used).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rows {
    Upserts,
    Deletions,
}

/// The rows of the file at `path`; blank lines are skipped, and a key twice is refused.
pub(super) fn read_rows(path: &Path, rows: Rows) -> Result<Vec<Row>, StateError> {
    let text = std::fs::read_to_string(path).map_err(|source| StateError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse_rows(path, &text, rows)
}

/// The rows of `text`, read from `path`. Performs no I/O.
pub(super) fn parse_rows(path: &Path, text: &str, rows: Rows) -> Result<Vec<Row>, StateError> {
    let mut parsed = Vec::new();
    let mut first_line: HashMap<Vec<u8>, usize> = HashMap::new();
    for (i, text) in text.lines().enumerate() {
        if text.trim().is_empty() {
            continue;
        }
        let line = i + 1;
        let problem = |problem: String| StateError::Input {
            path: PathBuf::from(path),
            line,
            problem,
        };
        let row = parse_row(text, rows).map_err(problem)?;
        if let Some(earlier) = first_line.insert(row.key.clone(), line) {
            return Err(problem(format!("the key is on line {earlier} already")));
        }
        parsed.push(Row { line, ..row });
    }
    Ok(parsed)
}

fn parse_row(text: &str, rows: Rows) -> Result<Row, String> {
    let shape = match rows {
        Rows::Upserts => "a key/value pair: an object {\"key\": …, \"value\": …}",
        Rows::Deletions => "a key to delete: an object {\"key\": …}",
    };
    let json: Json = serde_json::from_str(text).map_err(|e| format!("not {shape}: {e}"))?;
    let Json::Object(object) = json else {
        return Err(format!("not {shape}"));
    };
    if let Some(other) = object.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "not {shape}: unknown field `{other}` (rows have {FIELDS:?})"
        ));
    }
    let key = object
        .get("key")
        .ok_or_else(|| format!("not {shape}: no `key`"))?;
    let key = key_from_json(key).map_err(|e| format!("`key`: {e}"))?;
    let value = match (rows, object.get("value")) {
        (Rows::Upserts, None) => return Err(format!("not {shape}: no `value`")),
        (Rows::Upserts, Some(value)) => {
            Some(from_json(value).map_err(|e| format!("`value`: {e}"))?)
        }
        (Rows::Deletions, _) => None,
    };
    let number = |field: &str| -> Result<Option<u32>, String> {
        match object.get(field) {
            None => Ok(None),
            Some(n) => n
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| format!("`{field}` is no unsigned integer of 32 bits")),
        }
    };
    Ok(Row {
        line: 0,
        key,
        value,
        key_group: number("key_group")?,
        version: number("version")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str, rows: Rows) -> String {
        parse_rows(Path::new("rows.jsonl"), text, rows)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn rows_as_state_read_writes_them_are_read_back() {
        let text = "{\"key_group\": 0, \"key\": \"apple\", \"version\": 1, \"value\": 3}\n\n\
                    {\"key\": {\"$bin\": \"/w==\"}, \"value\": [1, null]}\n";
        let rows = parse_rows(Path::new("rows.jsonl"), text, Rows::Upserts).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            (rows[0].line, &rows[0].key[..], rows[0].key_group),
            (1, &b"apple"[..], Some(0))
        );
        assert_eq!(rows[0].value, Some(Value::UInt(3)));
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].key, [0xff]);
        let keys = parse_rows(
            Path::new("d"),
            "{\"key\": \"a\", \"value\": 1}",
            Rows::Deletions,
        )
        .unwrap();
        assert_eq!(keys[0].value, None);
    }

    #[test]
    fn each_bad_line_is_named_by_its_number() {
        let text = "{\"key\": \"a\", \"value\": 1}\n[\"b\", 2]\n";
        assert_eq!(
            problem(text, Rows::Upserts),
            "rows.jsonl:2: not a key/value pair: an object {\"key\": …, \"value\": …}"
        );
        assert!(problem("{\"key\": \"a\"}", Rows::Upserts).ends_with("no `value`"));
        assert!(
            problem("{\"key\": \"a\", \"vlaue\": 1}", Rows::Upserts)
                .contains("unknown field `vlaue`")
        );
        assert!(
            problem("not json", Rows::Deletions).starts_with("rows.jsonl:1: not a key to delete")
        );
        let twice = "{\"key\": \"a\", \"value\": 1}\n{\"key\": \"a\", \"value\": 2}";
        assert_eq!(
            problem(twice, Rows::Upserts),
            "rows.jsonl:2: the key is on line 1 already"
        );
        assert!(
            problem(
                "{\"key\": \"a\", \"value\": 1, \"version\": -1}",
                Rows::Upserts
            )
            .contains("`version`")
        );
    }
}
