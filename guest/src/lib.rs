//! Helpers for writing job host guests: WebAssembly components that implement the
//! `jobhost:operator` worlds (`source`, `operator`, `sink`).
//!
//! - [`records`] reads a columnar batch as [`Record`]s, after checking its offsets, and
//!   [`BatchBuilder`] builds one, so that guests never handle offsets themselves.
//! - [`batch_type!`] connects both to the `Batch` type a guest's own bindings generate.
//! - [`encode_state`] and [`decode_state_version`] wrap snapshots in a versioned envelope, so
//!   that a newer module can recognise, and migrate, state written by an older one.
//! - [`config_value`] looks up a required key of the operator's config.

mod batch;
mod memcmp;
mod state;

pub use batch::{BatchBuilder, BatchParts, ColumnarBatch, Columns, Record, Records, records};
pub use state::{
    decode_state, decode_state_exact, decode_state_version, encode_state, unsupported_version,
};

/// Returns the value of the required, non-empty config key `key`.
pub fn config_value<'a>(config: &'a [(String, String)], key: &str) -> Result<&'a str, String> {
    match config.iter().find(|(k, _)| k == key) {
        Some((_, value)) if !value.is_empty() => Ok(value),
        Some(_) => Err(format!("config key `{key}` is empty")),
        None => Err(format!("missing config key `{key}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::config_value;

    #[test]
    fn config_value_requires_a_non_empty_value() {
        let config = vec![
            ("path".to_owned(), "/input/words.txt".to_owned()),
            ("dir".to_owned(), String::new()),
        ];
        assert_eq!(config_value(&config, "path"), Ok("/input/words.txt"));
        assert_eq!(
            config_value(&config, "dir"),
            Err("config key `dir` is empty".to_owned())
        );
        assert_eq!(
            config_value(&config, "x"),
            Err("missing config key `x`".to_owned())
        );
    }
}
