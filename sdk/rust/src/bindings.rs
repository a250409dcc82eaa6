//! The bindings of the worlds of `wit/operator.wit`, generated here once so that no author
//! runs `wit_bindgen::generate!` or copies the WIT: the `export_*!` macros of this crate
//! connect an author's type to them. The worlds share one `types` interface, generated (every
//! type of it) in `jobhost-guest-wit` with the `timed-operator` world.
#![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]

/// The `operator` world: map, filter, flat-map, keyed aggregation.
pub mod operator {
    wit_bindgen::generate!({
        world: "operator",
        path: "../../wit",
        default_bindings_module: "jobhost_guest::bindings::operator",
        pub_export_macro: true,
        export_macro_name: "export_operator_world",
        with: { "jobhost:operator/types@0.3.2": jobhost_guest_wit::types },
    });
}

/// The `live-operator` world: `operator` and its `catch-up`, so that a live swap costs what
/// changed. [`export_operator!`](crate::export_operator) exports it.
pub mod live_operator {
    wit_bindgen::generate!({
        world: "live-operator",
        path: "../../wit",
        default_bindings_module: "jobhost_guest::bindings::live_operator",
        pub_export_macro: true,
        export_macro_name: "export_live_operator_world",
        with: { "jobhost:operator/types@0.3.2": jobhost_guest_wit::types },
    });
}

/// The `timed-operator` world: a `live-operator` that imports the host's `timers` and exports
/// `on-timer`, generated in `jobhost-guest-wit` (see there why).
/// [`export_timed_operator!`](crate::export_timed_operator) exports it.
pub use jobhost_guest_wit::timed_operator;

/// The `source` world.
pub mod source {
    wit_bindgen::generate!({
        world: "source",
        path: "../../wit",
        default_bindings_module: "jobhost_guest::bindings::source",
        pub_export_macro: true,
        export_macro_name: "export_source_world",
        with: { "jobhost:operator/types@0.3.2": jobhost_guest_wit::types },
    });
}

/// The `sink` world.
pub mod sink {
    wit_bindgen::generate!({
        world: "sink",
        path: "../../wit",
        default_bindings_module: "jobhost_guest::bindings::sink",
        pub_export_macro: true,
        export_macro_name: "export_sink_world",
        with: { "jobhost:operator/types@0.3.2": jobhost_guest_wit::types },
    });
}

pub use jobhost_guest_wit::types;
