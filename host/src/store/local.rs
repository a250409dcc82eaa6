//! The local back-end of points and modules: the state folder itself (synchronous `std::fs`),
//! and any folder on this machine that holds a point (an export).
//!
//! Where a barrier's journey ends on one machine: each subtask's state is written into the
//! checkpoint's in-progress folder, fsynced as it goes; `_metadata` last; then the folder is
//! renamed into place and its parent fsynced ([`crate::durable`]), so that a crash leaves a
//! point whole or not there at all. A savepoint is the same folder renamed into
//! `savepoints/` instead. No lease: on one machine, kernel locks say who runs a job
//! ([`super::lock`]).

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::backend::{Faults, PointStore, StateWrite, TakeState};
use super::fence::Lease;
use super::layout::METADATA_FILE;
use super::metadata::{self, MetadataError};
use super::state_file;
use super::{Layout, Metadata, Point, StateFault, StateFile, StoreError, io_error};
use crate::durable;
use crate::fault::Phase;
use crate::ids::{CheckpointId, JobId, SavepointId};

/// Points and modules in the state folder (and points in any folder on this machine).
#[derive(Clone, Debug)]
pub struct LocalPoints {
    layout: Layout,
}

impl LocalPoints {
    /// The points and modules of the state folder `layout` lays out.
    pub fn new(layout: Layout) -> LocalPoints {
        LocalPoints { layout }
    }
}

/// The names in `dir` (none if it does not exist).
pub(super) fn list_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.map_err(io_error(dir))?,
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_error(dir))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    Ok(names)
}

/// Every job with a folder in the state folder, unsorted.
pub(super) fn job_folders(layout: &Layout) -> Result<Vec<JobId>, StoreError> {
    let names = list_names(&layout.jobs())?;
    Ok(names.into_iter().filter_map(|n| n.parse().ok()).collect())
}

impl PointStore for LocalPoints {
    fn holds(&self, _location: &Path) -> bool {
        true
    }

    fn display(&self, location: &Path) -> String {
        location.display().to_string()
    }

    fn location_of_url(&self, _url: &Path) -> Option<PathBuf> {
        None
    }

    fn local_path<'l>(&self, location: &'l Path) -> Option<&'l Path> {
        Some(location)
    }

    fn shared(&self) -> bool {
        false
    }

    fn create_lease(&self, _job: &JobId, _lease: Lease) -> Result<(), StoreError> {
        Ok(())
    }

    fn take_over(&self, _job: &JobId, _holder: String) -> Result<Option<u64>, StoreError> {
        // Its locks and admission decide who runs what; what a crash left in progress is swept
        // under the start lock ([`super::Store::sweep_abandoned`]).
        Ok(None)
    }

    fn release_lease(&self, _job: &JobId) -> Result<(), StoreError> {
        Ok(())
    }

    fn lease(&self, _job: &JobId) -> Result<Option<Lease>, StoreError> {
        Ok(None)
    }

    fn held(&self, _job: &JobId) -> u64 {
        0
    }

    fn jobs(&self) -> Result<Vec<JobId>, StoreError> {
        job_folders(&self.layout)
    }

    fn has_job(&self, job: &JobId) -> Result<bool, StoreError> {
        Ok(self.layout.job(job).is_dir())
    }

    fn checkpoints(&self, job: &JobId) -> Result<Vec<CheckpointId>, StoreError> {
        let names = list_names(&self.layout.checkpoints(job))?;
        Ok(names
            .iter()
            .filter_map(|name| Layout::parse_checkpoint_name(name))
            .collect())
    }

    fn savepoint_ids(&self) -> Result<Vec<SavepointId>, StoreError> {
        let names = list_names(&self.layout.savepoints())?;
        Ok(names.into_iter().filter_map(|n| n.parse().ok()).collect())
    }

    fn has_point(&self, location: &Path) -> Result<bool, StoreError> {
        Ok(location.is_dir())
    }

    fn point_bytes(&self, location: &Path) -> u64 {
        let files = fs::read_dir(location).into_iter().flatten().flatten();
        files
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum()
    }

    fn point_files(&self, location: &Path) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        let entries = fs::read_dir(location).map_err(io_error(location))?;
        for entry in entries {
            let entry = entry.map_err(io_error(location))?;
            let is_file = entry.file_type().map_err(io_error(location))?;
            if let (true, Ok(name)) = (is_file.is_file(), entry.file_name().into_string()) {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn read_point_file(&self, location: &Path, name: &str) -> Result<Vec<u8>, StoreError> {
        let path = location.join(name);
        fs::read(&path).map_err(io_error(&path))
    }

    fn read_metadata(&self, location: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        let path = location.join(METADATA_FILE);
        let file = match fs::File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            other => other.map_err(io_error(&path))?,
        };
        let len = file.metadata().map_err(io_error(&path))?.len();
        if len > metadata::METADATA_BYTES_MAX {
            let source = MetadataError::TooLarge(len);
            return Err(StoreError::Metadata { path, source });
        }
        let mut bytes = Vec::with_capacity(len as usize);
        io::Read::read_to_end(
            &mut io::Read::take(file, metadata::METADATA_BYTES_MAX),
            &mut bytes,
        )
        .map_err(io_error(&path))?;
        Ok(Some(bytes))
    }

    /// In a folder, the files are opened through a capability on the point's folder, so that a
    /// name in `_metadata` can never reach outside it; one state file and its segments are in
    /// memory at a time, however large the point.
    fn read_states(&self, point: &Point, take: &mut TakeState<'_>) -> Result<(), StoreError> {
        let files = &point.state_files();
        let folder = cap_std::fs::Dir::open_ambient_dir(&point.dir, cap_std::ambient_authority())
            .map_err(io_error(&point.dir))?;
        let path_of = |file: &StateFile| point.dir.join(&file.file);
        let lens = files.iter().map(|(_, file)| {
            let found = folder.metadata(&file.file);
            found.map(|m| m.len()).map_err(StateFault::Unreadable)
        });
        super::verify_lengths(files, lens.collect(), &path_of)?;
        for (n, (_, file)) in files.iter().enumerate() {
            let blob = folder
                .read(&file.file)
                .map_err(|e| super::read::corrupt(file, &path_of, StateFault::Unreadable(e)))?;
            super::verify_blob(file, &blob, &path_of)?;
            let mut segments = SegmentFiles {
                folder: &folder,
                read: HashMap::new(),
            };
            take(n, blob.into(), &mut segments)?;
        }
        Ok(())
    }

    fn remove_point(&self, location: &Path) -> Result<(), StoreError> {
        durable::remove_dir(location).map_err(io_error(location))
    }

    fn write_state(&self, write: &StateWrite<'_>) -> Result<(), StoreError> {
        let StateWrite {
            encoded, earlier, ..
        } = write;
        let dir = self.layout.in_progress(write.job, write.checkpoint);
        durable::create_dir(&dir).map_err(io_error(&dir))?;
        for (name, pieces) in &encoded.segments {
            let path = dir.join(name);
            let linked = earlier(name).map(|from| link_if_present(&from, &path));
            if !linked.transpose()?.unwrap_or(false) {
                let bytes = state_file::segment_bytes(pieces);
                durable::write_file_in_building_dir(&path, &bytes.parts(), || Ok(()))
                    .map_err(io_error(&path))?;
            }
        }
        let path = dir.join(write.file);
        // A fault at this phase strikes with half the file written.
        durable::write_file_in_building_dir(&path, &encoded.state_file.parts(), write.midway)
            .map_err(io_error(&path))
    }

    fn publish(&self, metadata: &Metadata, to: &Path, faults: &Faults) -> Result<(), StoreError> {
        let bytes = metadata::encode_checked(metadata);
        let from = self.layout.in_progress(&metadata.job, metadata.checkpoint);
        durable::create_dir(&from).map_err(io_error(&from))?;
        let path = from.join(METADATA_FILE);
        durable::write_file_in_building_dir(&path, &[&bytes], || Ok(()))
            .map_err(io_error(&path))?;
        faults(Phase::MetadataWritten).map_err(io_error(&path))?;
        // Until this rename, a crash leaves only an in-progress folder that no reader lists.
        durable::publish_dir(&from, to).map_err(io_error(to))
    }

    /// A subtask's write of the checkpoint may still be landing in the folder as it is removed
    /// (a job stopping with a checkpoint in flight): a file made after the removal listed the
    /// folder leaves it "not empty", and the removal is tried again.
    fn abort(&self, job: &JobId, checkpoint: CheckpointId) -> Result<(), StoreError> {
        let dir = self.layout.in_progress(job, checkpoint);
        let mut attempts = 0;
        loop {
            match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty && attempts < 10 => {
                    attempts += 1;
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_error(&dir)(e)),
                _ => return Ok(()),
            }
        }
    }

    /// A file under that name whose bytes do not match it (damaged) is replaced: written to a
    /// temporary name, fsynced, then renamed, so a crash never leaves a partial module.
    fn put_module(&self, sha256: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        let location = self.layout.module(sha256);
        match fs::read(&location) {
            Ok(held) if held == bytes => return Ok(false),
            Ok(_) => tracing::warn!(
                path = %location.display(),
                "replacing a module file whose bytes do not match its name"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&location)(e)),
        }
        let dir = self.layout.modules();
        durable::create_dir(&dir).map_err(io_error(&dir))?;
        durable::write_file(&location, bytes).map_err(io_error(&location))?;
        Ok(true)
    }

    fn read_module(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        super::modules::read_if_present(&self.layout.module(sha256))
    }

    fn module_names(&self) -> Result<Vec<String>, StoreError> {
        list_names(&self.layout.modules())
    }

    fn remove_module(&self, sha256: &str) -> Result<(), StoreError> {
        let location = self.layout.module(sha256);
        match fs::remove_file(&location) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&location)(e)),
            _ => durable::sync_dir(&self.layout.modules()).map_err(io_error(&location)),
        }
    }
}

/// Links the segment file `from`, of an earlier point, as `to`; false if there is none (the
/// point was removed, or the segment's checkpoint aborted).
fn link_if_present(from: &Path, to: &Path) -> Result<bool, StoreError> {
    match durable::link_in_building_dir(from, to) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(to)(e)),
    }
}

/// The segment files of a point being read, each read whole, once, through the capability on
/// the point's folder.
struct SegmentFiles<'a> {
    folder: &'a cap_std::fs::Dir,
    read: HashMap<String, Bytes>,
}

impl state_file::Segments for SegmentFiles<'_> {
    fn bytes(&mut self, name: &str) -> Result<&Bytes, state_file::SegmentError> {
        if !self.read.contains_key(name) {
            let bytes =
                read_segment_file(self.folder, name).map_err(|fault| state_file::SegmentError {
                    segment: name.to_owned(),
                    fault,
                })?;
            self.read.insert(name.to_owned(), bytes.into());
        }
        Ok(&self.read[name])
    }
}

/// Segment file `name` of `folder`, refused unread past [`metadata::SEGMENT_BYTES_MAX`].
fn read_segment_file(
    folder: &cap_std::fs::Dir,
    name: &str,
) -> Result<Vec<u8>, state_file::SegmentFault> {
    use state_file::SegmentFault::{TooLarge, Unreadable};
    let file = folder.open(name).map_err(Unreadable)?;
    let len = file.metadata().map_err(Unreadable)?.len();
    let max = metadata::SEGMENT_BYTES_MAX;
    if len > max {
        return Err(TooLarge { len, max });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    io::Read::read_to_end(&mut io::Read::take(file.into_std(), max), &mut bytes)
        .map_err(Unreadable)?;
    Ok(bytes)
}
