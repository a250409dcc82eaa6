# Tasks for the job host. `./dev` installs `just` and the wasm target, then runs these.

wasm_target := "wasm32-wasip2"
guests := "-p line-source -p tokenizer -p counter-v1 -p counter-v2 -p window-count-v1 -p window-count-v2 -p file-sink -p null-sink -p counter-v3-wrong -p hostile -p ballast -p generator -p timer-probe -p contract-0-3-1"

# Cargo's target directory, wherever it is (`target/`, or `CARGO_TARGET_DIR`, or cargo's config),
# asked of cargo once; exported for the demo, which runs the binaries built there.
export JOBHOST_TARGET_DIR := `cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'`

# Build the example components (guest-examples/) and the tests' (tests/guests/) (wasm32-wasip2) into <target-dir>/wasm32-wasip2/guest: the Rust
# ones, then the Python (`<name>_py.wasm`) and JavaScript (`<name>_js.wasm`) ones, whose
# toolchains (componentize-py, componentize-js) the build scripts install, pinned, into the
# target dir and sdk/js/node_modules, idempotently.
guests: rust-guests py-guests js-guests

rust-guests:
    cargo build --locked --profile guest --target {{wasm_target}} {{guests}}

py-guests:
    bash sdk/python/build.sh

js-guests:
    bash sdk/js/build.sh

# Build the host (dev profile; dependencies optimized, see Cargo.toml).
host:
    cargo build --locked -p host

# The host's tests and the benchmarks' smoke test compile the host through clippy-driver, its
# warnings and lints errors (see the script): one build of the host both lints and tests it.
lint := "RUSTC_WORKSPACE_WRAPPER='" + justfile_directory() / "tests/lint-rustc.sh'"

# Everything CI checks: formatting, lints with warnings as errors, unit and end-to-end tests
# (the dashboard's test drives headless Chromium, which `tests/browser/setup.sh` installs from
# Debian's packages if it is missing).
# (Lints go through clippy rather than RUSTFLAGS, which would rebuild wasmtime.)
test: guests
    bash tests/browser/setup.sh
    cargo fmt --all -- --check
    cargo clippy --locked --profile guest --target {{wasm_target}} {{guests}} -- -D warnings
    {{lint}} cargo test --locked -p host --features fault-injection
    cargo test --locked -p jobhost-batch -p jobhost-guest {{guests}}
    "$JOBHOST_TARGET_DIR/venv-python-guests/bin/python" -m unittest discover sdk/python/tests
    node --test sdk/js/tests/*.test.js

# Not part of `test`: warm it takes seconds, but cold it first checks every dependency (minutes
# on 2 cores), which the test build does not share.
# The host's API documentation, its intra-doc links checked (warnings are errors).
doc:
    RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps -p host

# The decoders' property tests (every `proptests` module of the host: job files, `_metadata`,
# state files and segments, leases, control requests, HTTP requests, guests' batches and
# snapshots) at length: `cases` cases each, where `just test` runs proptest's default of 256.
# A failure prints its smallest input, and proptest keeps it in `host/proptest-regressions/`,
# which later runs replay first: commit it with the fix (and a unit test of the input).
fuzz cases="100000":
    PROPTEST_CASES={{cases}} {{lint}} cargo test --locked -p host --features fault-injection --lib -- proptests

# The demos: the word count (run, save, upgrade the counter to v2, resume from the savepoint),
# then the windows (a windowed count upgraded live to v2 with its windows open).
demo: rust-guests host
    bash examples/wordcount/demo.sh
    bash examples/windows/demo.sh

# The windows demo alone: a windowed count per key upgraded live (`host upgrade`) from v1 to v2
# while its windows are open; its windows equal an uninterrupted run's.
demo-windows: rust-guests host
    bash examples/windows/demo.sh

# The connectors demo: a word count from a Kafka topic into a PostgreSQL table, exactly once
# through a kill -9. Not part of `demo`: it installs and starts its servers (tansu: a `cargo
# install` of several minutes on first use; PostgreSQL from Debian's packages).
demo-connectors: rust-guests host
    bash examples/connectors/demo.sh

# The crash torture in full: 200 kills at random moments and at every checkpoint phase.
torture: rust-guests
    TORTURE_KILLS=200 cargo test --locked -p host --features fault-injection --test e2e torture -- --nocapture

# Benchmarks against native Rust and raw disk, in one run (release build of the host).
# `just bench --quick` finishes in under a minute. Results: stdout and <target-dir>/bench.json.
# The upgrade, start-up, idle-memory and rescale rows run the `host` binary built beside `bench`.
bench *args: guests
    cargo build --locked --release -p bench -p host
    "$JOBHOST_TARGET_DIR/release/bench" {{args}}

# The benchmarks as a smoke test (CI): quick workloads, on the test build (no release build of
# wasmtime); the figures mean nothing, only that every benchmark runs. Moto goes where the S3
# tests install it (they then skip the install), so that the object-store rows run too. The
# Python and JavaScript components it compiles go into the end-to-end tests' cache, which would
# compile them next otherwise. It builds the host as the tests do (lint wrapper, fault-injection
# feature), so that CI builds it once for both.
bench-smoke: guests
    bash tests/s3/install-moto.sh "$JOBHOST_TARGET_DIR/venv-moto"
    {{lint}} cargo build --locked -p host --features fault-injection --bin host
    {{lint}} cargo run --locked -p bench --features fault-injection -- --quick --json "$JOBHOST_TARGET_DIR/bench-smoke.json" --share-cache "$JOBHOST_TARGET_DIR/e2e-module-cache"
