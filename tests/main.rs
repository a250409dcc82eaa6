//! End-to-end tests: the real `host` binary running real `.wasm` components.
//!
//! The components come from `guest-examples/` and `tests/guests/`, built by `just guests` (the
//! README's test command builds them first).

#[cfg(not(feature = "fault-injection"))]
compile_error!(
    "the end-to-end tests drive a host built with fault injection: run them with \
     `cargo test -p host --features fault-injection` (or `./dev test`)"
);

mod bad_input;
mod cluster;
mod compile;
mod connectors;
mod contract;
mod control;
mod corrupt;
mod crash;
mod detach;
mod escapes;
mod expect;
mod hostile;
mod integrity;
mod javascript;
mod kafka;
mod languages;
mod layering;
mod limits;
mod live_upgrade;
mod module_cache;
mod profiling;
mod protected_folders;
mod python;
mod rescale;
mod s3;
mod savepoint;
mod scaffold;
mod serve;
mod servers;
mod shadow;
mod state_tools;
mod time;
mod topology;
mod torture;
mod upgrade;
mod util;
mod windows;
