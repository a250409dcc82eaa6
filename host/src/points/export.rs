//! `host export POINT DIR`: a point as one self-contained folder: its files (`_metadata`,
//! state files, segments), the modules it names (`modules/<sha256>.wasm`) and its job
//! definition (in `_metadata`; a copy as `job.toml` for people to read).
//!
//! `host run --from DIR` then works on any machine, with a fresh state folder and the original
//! module files and job file gone ([`crate::points::program`] finds the modules in the folder). The
//! point is read and verified whole first (every checksum, every module hash) and never
//! changed. The folder is built under a temporary name beside `DIR`, each file fsynced, then
//! renamed into place: a crash leaves no half export under `DIR`. A `DIR` that exists and
//! holds anything is refused.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

use super::program::{self, EXPORTED_JOB_FILE, EXPORTED_MODULES_DIR, ProgramError};
use crate::durable;
use crate::store::layout::module_file_name;
use crate::store::{Store, StoreError};

/// Why a point cannot be exported.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The target exists and is not an empty folder.
    #[error("{0}: exists and is not an empty folder; export into a new or empty folder")]
    NotEmpty(PathBuf),
    /// The point, or a module it names, cannot be read or is corrupt, or records no definition.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// Writing the export failed.
    #[error("{path}: {source}")]
    Write {
        /// The path at fault.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
}

impl From<StoreError> for ExportError {
    fn from(e: StoreError) -> Self {
        ExportError::Program(ProgramError::Store(e))
    }
}

fn write_error(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Write {
        path: path.to_owned(),
        source,
    }
}

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    /// The point's files copied.
    pub files: usize,
    /// The modules copied, by SHA-256.
    pub modules: Vec<String>,
    /// Bytes written.
    pub bytes: u64,
}

/// Exports the point at `dir` (`shown`: its name for people) into the new folder `to`.
pub fn export(store: &Store, dir: &Path, shown: &str, to: &Path) -> Result<Exported, ExportError> {
    refuse_unless_empty(to)?;
    let point = store.read_point(dir)?;
    if point.metadata.definition.is_none() {
        let point = shown.to_owned();
        return Err(ProgramError::NoDefinition { point }.into());
    }
    // Every state file and segment verified before anything is written.
    store.verify_states(&point)?;
    let hashes: BTreeSet<&str> = point
        .metadata
        .operators
        .iter()
        .map(|op| op.module_sha256.as_str())
        // A connector has no module (its hash is empty): nothing to export for it.
        .filter(|sha| !sha.is_empty())
        .collect();
    let mut modules = Vec::new();
    for sha in &hashes {
        modules.push((
            sha.to_string(),
            program::read_module(store, dir, shown, sha)?,
        ));
    }
    let parent = match to.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    let building = tempfile::Builder::new()
        .prefix(".export")
        .tempdir_in(&parent)
        .map_err(write_error(&parent))?;
    let mut exported = Exported {
        files: 0,
        modules: Vec::new(),
        bytes: 0,
    };
    for name in store.point_files(dir)? {
        let bytes = store.read_point_file(dir, &name)?;
        write_new(&building.path().join(&name), &bytes, &mut exported.bytes)?;
        exported.files += 1;
    }
    let modules_dir = building.path().join(EXPORTED_MODULES_DIR);
    durable::create_dir(&modules_dir).map_err(write_error(&modules_dir))?;
    for (sha, bytes) in modules {
        let path = modules_dir.join(module_file_name(&sha));
        write_new(&path, &bytes, &mut exported.bytes)?;
        exported.modules.push(sha);
    }
    durable::sync_dir(&modules_dir).map_err(write_error(&modules_dir))?;
    let job_file = building.path().join(EXPORTED_JOB_FILE);
    write_new(
        &job_file,
        point.metadata.job_file.as_bytes(),
        &mut exported.bytes,
    )?;
    publish(building, to)?;
    Ok(exported)
}

/// Refuses `to` unless it is absent or an empty folder.
fn refuse_unless_empty(to: &Path) -> Result<(), ExportError> {
    let empty = match std::fs::read_dir(to) {
        Err(e) => e.kind() == io::ErrorKind::NotFound,
        Ok(mut entries) => entries.next().is_none(),
    };
    match empty {
        true => Ok(()),
        false => Err(ExportError::NotEmpty(to.to_owned())),
    }
}

/// Writes a file of the folder being built, fsynced.
fn write_new(path: &Path, bytes: &[u8], total: &mut u64) -> Result<(), ExportError> {
    durable::write_file_in_building_dir(path, &[bytes], || Ok(())).map_err(write_error(path))?;
    *total += bytes.len() as u64;
    Ok(())
}

/// Renames the built folder to `to` (replacing it if it is an empty folder), durably.
fn publish(building: tempfile::TempDir, to: &Path) -> Result<(), ExportError> {
    refuse_unless_empty(to)?;
    // A temporary folder is owner-only (0700), like the state folder.
    let built = building.keep();
    let published = durable::publish_dir(&built, to).map_err(write_error(to));
    if published.is_err() {
        let _ = std::fs::remove_dir_all(&built);
    }
    published
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_new_or_empty_folder_is_exported_into() {
        let root = tempfile::tempdir().unwrap();
        let missing = root.path().join("new");
        assert!(refuse_unless_empty(&missing).is_ok());
        std::fs::create_dir(&missing).unwrap();
        assert!(refuse_unless_empty(&missing).is_ok(), "an empty folder");
        std::fs::write(missing.join("x"), "x").unwrap();
        let refused = refuse_unless_empty(&missing).unwrap_err();
        assert!(
            refused.to_string().contains("is not an empty folder"),
            "{refused}"
        );
        assert!(refuse_unless_empty(&missing.join("x")).is_err(), "a file");
    }
}
