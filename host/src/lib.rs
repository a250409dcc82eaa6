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
//!   ([`store::modules`]). Where points and modules live is one interface,
//!   [`store::PointStore`], with two implementations: the folder itself ([`store::local`]) or
//!   an S3-compatible object store ([`store::object`], whose lease is the generation fence,
//!   [`store::fence`]); the callers never ask which one they have.
//! - [`checksum`]: the checksum of every piece, state file and `_metadata` (a leaf).
//! - [`points`]: what points mean once written: restore points and whether one fits a job
//!   ([`points::savepoint`], pure), the program a point names ([`points::program`]), lineage
//!   ([`points::lineage`]), which modules nothing refers to ([`points::gc`]), a point as one
//!   self-contained folder ([`points::export`]); an operator's state read, and savepoints
//!   written edited, bootstrapped or repartitioned, offline ([`points::state`], `host state`).
//! - [`snapshot`]: a subtask's state by key group, and where it goes on resume (pure).
//! - [`time`]: event time: watermarks ([`time::watermarks`]: a source's, and the least of a
//!   subtask's inputs') and the timers the host keeps per key group ([`time::timers`]), pure.
//! - [`runtime`]: builds a job from a plan and runs it: subtasks, channels, partitioning; why a
//!   build, a checkpoint or a job failed, typed ([`runtime::JobFailure`] and its kin).
//! - [`cluster`]: a job's subtasks on `host worker` processes (`host run --workers N`): the
//!   coordinator's pool and deployments ([`cluster::remote`]), the worker
//!   ([`cluster::worker`]), the exchange of batches between them as Arrow IPC over TCP with
//!   credit ([`cluster::exchange`]), placement and schedulers; a worker's lease, which fences
//!   off its subtasks once it fell silent past its coordinator's timeout
//!   ([`runtime::lease`]).
//! - [`connectors`]: connectors built into the host (NATS JetStream source and sink,
//!   PostgreSQL sink, Kafka source and at-least-once sink), run by the runtime behind the same
//!   role calls as components ([`runtime::instance`]); and the capture, which stands in for
//!   every sink in a shadow run.
//! - [`control`]: the control socket of a running job, and its client.
//! - [`metrics`]: what a running job counts (atomics per subtask), sampled for `host serve`.
//! - [`jobs`]: jobs seen from outside their processes, as the CLI and `host serve` share them:
//!   jobs and points listed, requests to a running job.
//! - [`serve`]: `host serve`: the HTTP API, `/metrics` and the dashboard.
//! - [`shadow`]: `host shadow`: an old and a new job run from one point on the same input
//!   (their sources bounded alike: [`runtime::SourceBound`]), every sink a capture
//!   ([`connectors::capture`]), checkpoints in a temporary folder; their outputs and keyed
//!   state compared ([`shadow::diff`]). Changes nothing.
//! - [`admission`]: whether a job may start beside the running ones (no two write one folder).
//! - [`key_group`]: where a key's state lives (pinned, recorded in every `_metadata`).
//! - [`protected`]: the host's own folders, which no mount may reach.
//! - `fault`: the phases of a checkpoint where tests inject crashes and full disks (public
//!   only with the `fault-injection` feature, which the tests build with).
//!
//! The command line (`host/src/cli/`) belongs to the binary.
//!
//! # Follow one record
//! 1. **Poll.** A source subtask ([`runtime::subtask`]) polls its guest for a batch
//!    (`poll-batch`), or its connector ([`connectors`]: a JetStream stream read from the
//!    sequence its checkpoint holds, Kafka partitions from their offsets; [`runtime::instance`] calls either); the batch is checked
//!    before anything reads it ([`runtime::subtask::check_returned`]).
//! 2. **Partition.** On a `key-by` edge, [`runtime::partition`] splits the batch by key group
//!    ([`key_group`]), writing each record's group into it.
//! 3. **Carry.** [`runtime::channel`] carries it to the next subtask, bounded by records: a full
//!    channel makes its sender wait (back-pressure). When the next subtask runs on another
//!    worker, [`cluster::exchange`] drains that channel into a TCP connection and feeds the
//!    other worker's channel, credit flowing back as it takes each batch.
//! 4. **Process.** An operator subtask calls `process` on its guest ([`engine::instance`], every
//!    call bounded in memory and wall-clock time) and sends the result on (steps 2-3 again).
//! 5. **Write.** A sink subtask hands it to its guest's `write-batch` (or its connector's: rows
//!    copied into a PostgreSQL transaction, records kept for JetStream or Kafka), in the transaction that
//!    the next checkpoint commits ([step 7 of the barrier](#follow-one-barrier)).
//!
//! # Follow one watermark
//! 1. **Derive.** After each poll, a source subtask's [`time::watermarks::Generator`] reads the
//!    batch's timestamps (any source's, whatever it is made of) and, per the job file's
//!    strategy, advances the watermark to the greatest minus the bound minus 1 (or to what a
//!    `timed-source` guest declared, [`engine::time`]); after `idle_ms` without records it
//!    says `Idle` instead; a source that runs dry sends `i64::MAX`.
//! 2. **Carry.** [`runtime::partition::Output::time`] sends it on every edge to every
//!    downstream subtask, in band behind the records it covers; a barrier's alignment holds it
//!    back with them.
//! 3. **Combine.** A downstream subtask's [`time::watermarks::Valve`] takes the least watermark
//!    of its inputs that are not idle, never going back.
//! 4. **Fire.** When it advances, the subtask's [`time::timers::TimerService`] lists the
//!    event-time timers it passed, and the subtask hands them to its guest's `on-timer` in
//!    batches ([`runtime::subtask`]'s `time`), sending what it returns on; processing-time timers
//!    fire the same way when the wall clock reaches them. Timers come from the guest's
//!    `register` calls in `process` and `on-timer`, checked and queued by [`engine::time`] and
//!    carried out when the call returns.
//! 5. **Forward.** Then the watermark goes on (steps 2-5 again), and into the metrics.
//! 6. **Checkpoint.** At a barrier, the timers of the key groups whose timers changed, and a
//!    source's watermark, join the guest's state in [`snapshot::Held`] (the host's own pieces,
//!    beside the guest's: [`snapshot::Held::merge_timers`]) and are written with it
//!    ([`store::state_file`]); on resume they go with their key groups
//!    ([`snapshot::plan_restore`]).
//!
//! # Follow one barrier
//! 1. **Trigger.** The coordinator task ([`runtime::coordinator`]) asks
//!    [`barrier::Coordinator`] for barrier N, on a tick or a save request, and sends it to every
//!    source subtask; each emits it in-band after its last record.
//! 2. **Align.** Downstream, a subtask's [`barrier::Aligner`] holds back the inputs that
//!    delivered N until all have.
//! 3. **Snapshot.** The subtask snapshots its guest (a sink first `prepare-commit`s): the guest
//!    returns its operator state and the key groups changed since its last snapshot (whole, or
//!    as deltas of just the values that changed), which [`snapshot::Held::merge`] merges into
//!    the subtask's full state.
//! 4. **Write.** The subtask hands that to [`store::Store::write_state`] off the hot path, which
//!    writes the pieces new since the last checkpoint into one segment and hard-links the
//!    earlier segments that hold the rest ([`store::state_file`], every piece [`checksum`]ed;
//!    [`durable`] writes a file a few MiB at a time, starting the disk's write-back as it goes,
//!    then fsyncs it).
//! 5. **Forward and ack.** The subtask forwards the barrier and acks to the coordinator.
//! 6. **Complete.** When every subtask acked ([`runtime::coordinator`]), `_metadata` is
//!    written and the point published atomically, in a folder or on an object store
//!    ([`store::PointStore::publish`]); retention removes the
//!    checkpoints past the job's count ([`barrier::retention_victims`]).
//! 7. **Commit.** The sinks are told to `commit`; a save request is answered.
//!
//! # Follow one point back
//! A job that resumes (`--from`) reads what [the barrier](#follow-one-barrier) wrote:
//! 1. **Find.** [`points::savepoint`] resolves what `--from` names to a folder (a job id to
//!    its newest point that the job's lease says its own process wrote:
//!    [`store::fence::admits`]).
//! 2. **Verify.** [`store::Store::read_states`] reads the point back, every checksum verified.
//! 3. **Check.** Every property that decides where a key's state lives is compared
//!    ([`points::savepoint::check_compatibility`]), before any guest's `restore` sees a byte.
//! 4. **Distribute.** Each new subtask receives the key groups it owns, at whatever
//!    parallelism ([`snapshot::plan_restore`], [`runtime`]'s `restore`), with their timers,
//!    which the host rebuilds into the subtask's timer service; a source, its watermark.
//! 5. **Restore.** The state is lowered into each guest from the bytes read, not from a copy
//!    ([`engine::borrowed`]); `restore` only loads state.
//! 6. **Recover.** Once the whole job is built (and, for `host run`, admitted by
//!    [`admission`]), each restored sink's first step is `recover`: it publishes what the point
//!    prepared and discards what was written after it (a PostgreSQL sink commits the
//!    transactions the point lists and rolls back the others it prepared:
//!    [`connectors::postgres`]; a Kafka sink fences the old subtasks' producers and produces
//!    what their markers do not show committed: [`connectors::kafka::sink`]). `host check` stops before this step.
//!
//! Each step where a crash or an I/O error can strike is a phase of `fault.rs`; tests inject
//! faults there (in a build with the `fault-injection` feature only).

// The module documentation walks the code, private parts included, and links them: it is
// read with `cargo doc --document-private-items` (the crate is a binary's library, with no
// public API of its own to keep the links out of).
#![allow(rustdoc::private_intra_doc_links)]

pub mod admission;
pub mod barrier;
pub mod checksum;
pub mod cluster;
pub mod connectors;
pub mod control;
pub mod durable;
pub mod engine;
#[cfg(feature = "fault-injection")]
pub mod fault;
#[cfg(not(feature = "fault-injection"))]
#[allow(dead_code)] // the phases' names and parser serve `host run`'s fault flags only
mod fault;
#[cfg(test)]
mod fuzz;
pub mod ids;
pub mod jobs;
pub mod key_group;
pub mod metrics;
pub mod points;
pub mod protected;
pub mod runtime;
pub mod serve;
pub mod shadow;
pub mod snapshot;
pub mod store;
pub mod time;
pub mod topology;
