//! The program a point names: the job definition its `_metadata` records and the modules it
//! names by SHA-256, found in the module store ([`crate::store::modules`]) or in an exported
//! point's own `modules/` folder.
//!
//! What `host run --from POINT` and `host check --from POINT` start from when no job file is
//! given: exactly the program that wrote the point (the rollback after a bad upgrade). Every
//! module is verified against its hash before the engine sees it; nothing is written (modules
//! of an object store are fetched into a temporary folder that lives as long as the
//! [`Program`]).

use std::path::{Path, PathBuf};

use crate::store::layout::module_file_name;
use crate::store::metadata::DEFINITION_SINCE;
use crate::store::modules::{read_if_present, verify_module};
use crate::store::{Metadata, Store, StoreError};
use crate::topology::{Implementation, Plan, TopologyError};

/// The folder inside an exported point that holds the modules it names.
pub const EXPORTED_MODULES_DIR: &str = "modules";
/// The job file an export writes beside the point, for people to read (the point's
/// `_metadata` holds the definition that runs).
pub const EXPORTED_JOB_FILE: &str = "job.toml";

/// Why a point's program cannot be started without a job file.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// The point predates format 4: it records no job definition.
    #[error(
        "{point} was written by a host before metadata format {DEFINITION_SINCE}: it records \
         no job definition and names no module kept in a module store, so it cannot run \
         without a job file; pass one: host run JOB.toml --from {point}"
    )]
    NoDefinition {
        /// The point.
        point: String,
    },
    /// The recorded job file does not validate here.
    #[error("{point}: its recorded job definition is not valid here: {source}")]
    Definition {
        /// The point.
        point: String,
        /// Why.
        source: TopologyError,
    },
    /// An operator of the definition has no entry in the point.
    #[error("{point}: operator `{operator}` of its job definition names no module in the point")]
    NoModule {
        /// The point.
        point: String,
        /// The operator.
        operator: String,
    },
    /// Reading the point or a module failed, or a module is missing or corrupt.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A temporary folder for fetched modules cannot be made.
    #[error("cannot make a temporary folder for the modules of {point}: {source}")]
    Temp {
        /// The point.
        point: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The program that wrote a point, ready to build.
pub struct Program {
    /// The job file's text, as recorded.
    pub text: String,
    /// The folder its relative paths resolve against, as recorded.
    pub base: PathBuf,
    /// The plan, each operator's module the verified file of the hash the point names.
    pub plan: Plan,
    /// Modules fetched from an object store: removed when the program is dropped.
    pub fetched: Option<tempfile::TempDir>,
}

/// The program that wrote the point at `dir` (`shown`: how to name it to a person). Reads,
/// and verifies, only.
pub fn of_point(store: &Store, dir: &Path, shown: &str) -> Result<Program, ProgramError> {
    let metadata = store.read_point(dir)?.metadata;
    let definition = metadata
        .definition
        .as_ref()
        .ok_or_else(|| ProgramError::NoDefinition {
            point: shown.to_owned(),
        })?;
    let base = PathBuf::from(&definition.base_dir);
    let mut plan =
        Plan::from_toml(&metadata.job_file, &base).map_err(|source| ProgramError::Definition {
            point: shown.to_owned(),
            source,
        })?;
    let mut fetched = None;
    for op in &mut plan.operators {
        // A connector runs in the host: its definition is its config, in the job file.
        let Implementation::Module(path) = &mut op.implementation else {
            continue;
        };
        let sha = module_of(&metadata, op.id.as_str()).ok_or_else(|| ProgramError::NoModule {
            point: shown.to_owned(),
            operator: op.id.to_string(),
        })?;
        *path = locate(store, dir, shown, sha, &mut fetched)?;
    }
    Ok(Program {
        text: metadata.job_file.clone(),
        base,
        plan,
        fetched,
    })
}

/// The module hash the point records for `operator`. Performs no I/O.
pub fn module_of<'m>(metadata: &'m Metadata, operator: &str) -> Option<&'m str> {
    let op = metadata
        .operators
        .iter()
        .find(|op| op.id.as_str() == operator);
    op.map(|op| op.module_sha256.as_str())
}

/// The exported point at `dir`'s own copy of module `sha`, verified, if it has one.
fn exported_copy(
    store: &Store,
    dir: &Path,
    shown: &str,
    sha: &str,
) -> Result<Option<(PathBuf, Vec<u8>)>, StoreError> {
    // An export is a folder on this machine; a point on an object store has no modules of its
    // own.
    let Some(dir) = store.local_path(dir) else {
        return Ok(None);
    };
    let exported = dir.join(EXPORTED_MODULES_DIR).join(module_file_name(sha));
    let Some(bytes) = read_if_present(&exported)? else {
        return Ok(None);
    };
    let bytes = verify_module(sha, bytes, &exported, shown)?;
    Ok(Some((exported, bytes)))
}

/// The bytes of module `sha`, which the point at `dir` names, verified: the point's own copy
/// if it is an export, else the module store's.
pub fn read_module(
    store: &Store,
    dir: &Path,
    shown: &str,
    sha: &str,
) -> Result<Vec<u8>, StoreError> {
    match exported_copy(store, dir, shown, sha)? {
        Some((_, bytes)) => Ok(bytes),
        None => store.read_module(sha, shown),
    }
}

/// A local file holding module `sha`, verified: the exported point's own copy if it has one,
/// else the module store's (fetched into `fetched` from an object store).
fn locate(
    store: &Store,
    dir: &Path,
    shown: &str,
    sha: &str,
    fetched: &mut Option<tempfile::TempDir>,
) -> Result<PathBuf, ProgramError> {
    if let Some((path, _)) = exported_copy(store, dir, shown, sha)? {
        return Ok(path);
    }
    let bytes = store.read_module(sha, shown)?;
    if let Some(path) = store.local_path(&store.module_location(sha)) {
        return Ok(path.to_owned());
    }
    let temp = match fetched {
        Some(temp) => temp,
        None => fetched.insert(
            tempfile::Builder::new()
                .prefix("host-modules")
                .tempdir()
                .map_err(|source| ProgramError::Temp {
                    point: shown.to_owned(),
                    source,
                })?,
        ),
    };
    let path = temp.path().join(module_file_name(sha));
    std::fs::write(&path, bytes).map_err(|source| StoreError::Io {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}
