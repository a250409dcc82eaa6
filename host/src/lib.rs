//! A host for stream jobs whose operators are WebAssembly components, with consistent
//! checkpoints and pinned, relocatable savepoints, so that stateful jobs survive upgrades.
//!
//! # Layout
//! - [`ids`]: job, operator, checkpoint and savepoint ids.
//! - [`topology`]: the job file and the validated [`topology::Plan`].
//! - [`engine`]: wasmtime, the compiled-module cache, one instance per subtask.
//! - [`barrier`]: barriers, their alignment, the coordinator's decisions (pure).
//! - [`durable`]: writes that a crash leaves complete or absent (the store's and the cache's).
//! - [`store`]: the state folder: checkpoints, savepoints, metadata, the module store
//!   ([`store::modules`]); points and modules may live on an
//!   S3-compatible object store instead ([`store::object`], behind the same methods).
//! - [`program`]: the program a point names (definition, modules by hash): `run --from`
//!   without a job file.
//! - [`lineage`]: which point came from which job and program (`savepoints --tree`, pure).
//! - [`gc`]: which modules of the module store nothing refers to any more (`host gc`).
//! - [`export`]: a point, its modules and its definition as one self-contained folder.
//! - [`points`]: what a user does with points: [`points::state`] (`host state`) reads an
//!   operator's state, and writes savepoints edited, bootstrapped or repartitioned, offline.
//! - [`savepoint`]: restore points (`--from`), and whether a point fits a new job (pure).
//! - [`snapshot`]: a subtask's state by key group, and where it goes on resume (pure).
//! - [`runtime`]: builds a job from a plan and runs it: subtasks, channels, partitioning; why a
//!   build, a checkpoint or a job failed, typed ([`runtime::JobFailure`] and its kin).
//! - [`control`]: the control socket of a running job, and its client.
//! - [`metrics`]: what a running job counts (atomics per subtask), sampled for `host serve`.
//! - [`ops`]: what the CLI and `host serve` share: jobs and points listed, requests to jobs.
//! - [`serve`]: `host serve`: the HTTP API, `/metrics` and the dashboard.
//! - [`admission`]: whether a job may start beside the running ones (no two write one folder).
//! - [`key_group`]: where a key's state lives (pinned, recorded in every `_metadata`).
//! - `fault`: the phases of a checkpoint where tests inject crashes and full disks (public
//!   only with the `fault-injection` feature, which the tests build with).
//!
//! The command line (`host/src/cli/`) belongs to the binary.
//!
//! # Follow one record
//! A source subtask ([`runtime::subtask`]) polls its guest for a batch (`poll-batch`), the
//! [`runtime::partition`] splits it by key group ([`key_group`]) on a `key-by` edge, writing
//! each record's group into the batch, [`runtime::channel`] carries it (bounded by records,
//! for back-pressure) to an operator subtask, which calls `process` on its guest
//! ([`engine::instance`], every call bounded in memory and wall-clock time) and sends the result
//! on, until a sink subtask hands it to its guest's `write-batch`, in the transaction that the
//! next checkpoint commits.
//!
//! # Follow one barrier
//! The coordinator task in [`runtime`] asks [`barrier::Coordinator`] for barrier N and sends it
//! to every source subtask; each emits it in-band after its last record. Downstream, a subtask's
//! [`barrier::Aligner`] holds back inputs that delivered N until all have; then it snapshots
//! its guest (a sink first `prepare-commit`s): the guest returns its operator state and the key
//! groups changed since its last snapshot (whole, or as deltas of just the values that
//! changed), which [`snapshot::Held`] merges into the subtask's full state; the subtask hands
//! that to [`store::Store::write_state`] off the hot path, which writes the pieces new since
//! the last checkpoint into one segment and hard-links the earlier segments that hold the rest
//! ([`store::state_file`]; [`durable`] writes a file a few MiB at a time, starting the disk's
//! write-back as it goes, then fsyncs it), forwards the barrier, and acks. When every subtask
//! acked ([`runtime::coordinator`]), `_metadata` is written and the folder published atomically
//! ([`store`]), the sinks are told to `commit`, and retention runs. A job that resumes reads
//! the point back through [`savepoint`] and [`store::Store::read_states`], every checksum
//! verified and every property that decides where a key's state lives compared
//! ([`savepoint::check_compatibility`]), before any guest's `restore` sees a byte; each new
//! subtask receives the key groups it owns, at whatever parallelism ([`snapshot::plan_restore`],
//! [`runtime`]'s `restore`), lowered into its guest from the bytes read, not from a copy
//! ([`engine::borrowed`]). `restore` only loads state; once the whole job is built (and, for
//! `host run`, admitted by [`admission`]), each restored sink's first step is `recover`: it
//! publishes what the point prepared and discards what was written after it. `host check`
//! stops before that step.
//!
//! Each step where a crash or an I/O error can strike is a phase of `fault.rs`; tests inject
//! faults there (in a build with the `fault-injection` feature only).

// The module documentation walks the code, private parts included, and links them: it is
// read with `cargo doc --document-private-items` (the crate is a binary's library, with no
// public API of its own to keep the links out of).
#![allow(rustdoc::private_intra_doc_links)]

pub mod admission;
pub mod barrier;
pub mod control;
pub mod durable;
pub mod engine;
pub mod export;
#[cfg(feature = "fault-injection")]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
#[allow(dead_code)] // the phases' names and parser serve `host run`'s fault flags only
mod fault;
#[cfg(test)]
mod fuzz;
pub mod gc;
pub mod ids;
pub mod key_group;
pub mod lineage;
pub mod metrics;
pub mod ops;
pub mod points;
pub mod program;
pub mod protected;
pub mod runtime;
pub mod savepoint;
pub mod serve;
pub mod snapshot;
pub mod store;
pub mod topology;
