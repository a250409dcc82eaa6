//! The generated `types` interface of `wit/operator.wit` and its `timed-operator` world, in a
//! crate of their own under `jobhost-guest` (which re-exports both, in `bindings`; no author
//! depends on this crate).
//!
//! Why a crate: `wit_bindgen::generate!` names an exported interface's export macro after the
//! interface (`__export_jobhost_operator_catch_up_0_3_2_cabi`) and, for an SDK whose macros
//! authors call, exports it at the crate's root. `catch-up` is exported by both
//! `live-operator` (a plain operator) and `timed-operator`, so their bindings cannot share a
//! crate. The `types` live here, every one of them, so that `jobhost-guest`'s worlds and this
//! one share them.
#![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]

/// The `timed-operator` world: a `live-operator` that imports the host's `timers` and exports
/// `on-timer`.
pub mod timed_operator {
    wit_bindgen::generate!({
        world: "timed-operator",
        path: "../../../wit",
        default_bindings_module: "jobhost_guest::bindings::timed_operator",
        pub_export_macro: true,
        export_macro_name: "export_timed_operator_world",
        generate_unused_types: true,
    });
}

pub use timed_operator::jobhost::operator::types;

impl From<jobhost_batch::BatchBuilder> for types::Batch {
    fn from(builder: jobhost_batch::BatchBuilder) -> Self {
        let jobhost_batch::BatchParts {
            keys,
            key_ends,
            values,
            value_ends,
            timestamps,
        } = builder.finish();
        types::Batch {
            keys,
            key_ends,
            values,
            value_ends,
            timestamps,
            key_groups: Vec::new(),
        }
    }
}
