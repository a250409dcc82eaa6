//! The SDK for job host operators in Rust: WebAssembly components that implement the
//! `jobhost:operator` worlds (`source`, `operator`, `sink`) of `wit/operator.wit`.
//!
//! An author implements one trait, [`Operator`], [`Source`] or [`Sink`], and calls one macro,
//! [`export_operator!`], [`export_source!`] or [`export_sink!`]. An operator that uses time
//! also implements [`TimedOperator`] (timers per key, [`time`]) and is exported by
//! [`export_timed_operator!`]; a [`WindowOperator`] ([`window`], [`aggregate`]) by
//! [`export_window_operator!`]: both build the `timed-operator` world. The SDK owns the bindings
//! (generated here from the WIT it carries), holds the author's value between calls, reads
//! batches as [`Record`]s and builds them with [`BatchBuilder`], and keeps keyed state by key
//! group ([`Keyed`]): each snapshot carries only the groups that changed, and a job can resume
//! at another parallelism without the author handling key groups. State that must cross
//! languages uses the portable envelope ([`envelope`], `docs/state-format.md`); state read
//! only by Rust may use the postcard helpers ([`encode_state`], [`decode_state_exact`]).
//!
//! ```ignore
//! use jobhost_guest::{BatchBuilder, Context, Keyed, ModuleInfo, Operator, Records, StateFormat};
//!
//! struct Counter;
//!
//! impl Operator for Counter {
//!     type Value = u64;
//!     const STATE: StateFormat = StateFormat { name: "word-count", version: 1 };
//!     fn describe() -> ModuleInfo { jobhost_guest::module("word-counter", "1.0.0") }
//!     fn init(_: &Context) -> Result<Self, String> { Ok(Counter) }
//!     fn process(&mut self, input: Records<'_>, keyed: &mut Keyed<u64>, out: &mut BatchBuilder)
//!         -> Result<(), String> {
//!         for record in input {
//!             *keyed.or_default(&record) += 1;
//!             out.push(record.key, b"", record.timestamp)?;
//!         }
//!         Ok(())
//!     }
//! }
//!
//! jobhost_guest::export_operator!(Counter);
//! ```
//!
//! Feature `fast-memcmp` replaces wasi-libc's byte-at-a-time `memcmp` (the docs of module
//! `memcmp`, which only that feature builds, say when it pays); enable it in the component's
//! own crate only.

pub mod aggregate;
mod batch;
pub mod bindings;
pub mod envelope;
mod keyed;
#[cfg(feature = "fast-memcmp")]
pub mod memcmp;
mod runtime;
mod state;
pub mod time;
mod timed;
pub mod window;

pub use batch::{BatchBuilder, BatchParts, ColumnarBatch, Columns, Record, Records, records};
pub use bindings::types::{
    Batch, Context, ModuleInfo, PollResult, Rescale, Restored, Snapshot, StateOrigin, TimeDomain,
};
pub use envelope::StateFormat;
pub use keyed::{Key, Keyed, OldEntries};
pub use runtime::{
    NO_KEYED_STATE, Operator, Restore, Sink, Source, glue, module, no_operator_state,
};
pub use state::{
    decode_state, decode_state_exact, decode_state_version, encode_state, unsupported_version,
};
pub use time::{TimerService, Timers, timers};
pub use timed::TimedOperator;
pub use window::{LATE_KEY_PREFIX, Window, WindowOperator, Windows};

impl ColumnarBatch for Batch {
    fn columns(&self) -> Columns<'_> {
        Columns {
            keys: &self.keys,
            key_ends: &self.key_ends,
            values: &self.values,
            value_ends: &self.value_ends,
            timestamps: &self.timestamps,
            key_groups: &self.key_groups,
        }
    }
}

/// Returns the value of the required, non-empty config key `key`.
pub fn config_value<'a>(config: &'a [(String, String)], key: &str) -> Result<&'a str, String> {
    match config.iter().find(|(k, _)| k == key) {
        Some((_, value)) if !value.is_empty() => Ok(value),
        Some(_) => Err(format!("config key `{key}` is empty")),
        None => Err(format!("missing config key `{key}`")),
    }
}

/// Returns the value of the optional config key `key`, parsed, or `default`.
pub fn config_or<T: std::str::FromStr>(
    config: &[(String, String)],
    key: &str,
    default: T,
) -> Result<T, String> {
    match config.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, value)) => value
            .parse()
            .map_err(|_| format!("config key `{key}`: `{value}` is not valid")),
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
