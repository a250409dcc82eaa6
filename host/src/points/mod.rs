//! Points (checkpoints and savepoints) once written: what `--from` names and whether it fits a
//! job, the program a point names, where points came from, which modules they keep alive, and a
//! point carried elsewhere. The store ([`crate::store`]) writes and reads a point's files; these
//! modules decide what the points mean.
//!
//! - [`savepoint`]: restore points (`--from`), and whether a point fits a new job (pure).
//! - [`program`]: the program a point names (definition, modules by hash): `run --from`
//!   without a job file.
//! - [`lineage`]: which point came from which job and program (`savepoints --tree`, pure).
//! - [`gc`]: which modules of the module store nothing refers to any more (`host gc`).
//! - [`export`]: a point, its modules and its definition as one self-contained folder.
//! - [`state`]: `host state`: an operator's state read, edited, bootstrapped from data or
//!   repartitioned, offline, by the host itself (no guest code).

pub mod export;
pub mod gc;
pub mod lineage;
pub mod program;
pub mod savepoint;
pub mod state;
