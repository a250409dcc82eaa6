#!/usr/bin/env bash
# Cargo's RUSTC_WORKSPACE_WRAPPER for the tests and the benchmarks' smoke test: the workspace's own
# crates are compiled by clippy-driver, their warnings and Clippy's lints errors, while the
# dependencies are compiled by rustc alone. The lints then cost no separate `cargo clippy`,
# which checks every dependency again (wasmtime, Cranelift, tokio: 9 minutes of CI from cold).
# Cargo runs it as `lint-rustc.sh RUSTC ARGS...`; clippy-driver takes the same form.
exec clippy-driver "$@" -D warnings
