# Tasks for the job host. `./dev` installs `just` and the wasm target, then runs these.

wasm_target := "wasm32-wasip2"
guests := "-p line-source -p tokenizer -p counter-v1 -p counter-v2 -p file-sink -p hostile -p null-sink -p ballast"

# Build the example components (wasm32-wasip2) into target/wasm32-wasip2/guest.
guests:
    cargo build --locked --profile guest --target {{wasm_target}} {{guests}}

# Build the host (dev profile; dependencies optimized, see Cargo.toml).
host:
    cargo build --locked -p host

# Everything CI checks: formatting, lints with warnings as errors, unit and end-to-end tests.
# (Lints go through clippy rather than RUSTFLAGS, which would rebuild wasmtime.)
test: guests
    cargo fmt --all -- --check
    cargo clippy --locked -p host --all-targets -- -D warnings
    cargo clippy --locked --profile guest --target {{wasm_target}} {{guests}} -- -D warnings
    cargo test --locked -p host
    cargo test --locked -p jobhost-guest {{guests}}

# The demo: run a word count, save it, upgrade the counter to v2, resume from the savepoint.
demo: guests host
    bash examples/wordcount/demo.sh

# The crash torture in full: 200 kills at random moments and at every checkpoint phase.
torture: guests
    TORTURE_KILLS=200 cargo test --locked -p host --test e2e torture -- --nocapture

# Benchmarks against native Rust and raw disk, in one run (release build of the host).
# `just bench --quick` finishes in under a minute. Results: stdout and target/bench.json.
bench *args: guests
    cargo build --locked --release -p host --bin bench
    target/release/bench {{args}}

# The benchmarks as a smoke test (CI): quick workloads, on the test build (no release build of
# wasmtime); the figures mean nothing, only that every benchmark runs.
bench-smoke: guests
    cargo run --locked -p host --bin bench -- --quick --json target/bench-smoke.json
