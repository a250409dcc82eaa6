//! Reading a point back: its `_metadata` verified ([`Store::read_point`]), then its state
//! files ([`Store::read_states`]), every check shared by both back-ends ([`verify_lengths`],
//! [`verify_blob`]); each state file decoded as the point's layout has it, and,
//! in format 3, its segments read whole (from the point's folder, or from the object store)
//! and verified before any piece is taken from them.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::layout::METADATA_FILE;
use super::metadata::{self, MetadataError};
use super::object::ObjectPoints;
use super::{
    Layout, Point, StateFile, StateLayout, States, Store, StoreError, io_error, state_file,
};
use crate::ids::OperatorId;
use crate::snapshot::Held;

/// Why a state file, verified, does not give its state: the file, or a segment, at fault.
pub(super) enum Undecodable {
    StateFile(state_file::StateFileError),
    Segment(state_file::SegmentError),
}

impl Undecodable {
    pub(super) fn at(self, store: &Store, point: &Point, file: &StateFile) -> StoreError {
        let (location, problem) = match self {
            Undecodable::StateFile(e) => (point.dir.join(&file.file), e.to_string()),
            Undecodable::Segment(e) => (point.dir.join(e.segment), e.problem),
        };
        let path = PathBuf::from(store.display(&location));
        StoreError::CorruptState { path, problem }
    }
}

/// A subtask's state from its verified state file, as the point's layout has it; in format 3,
/// its pieces taken from `segments` (in the point's folder, or on the object store), each
/// segment verified whole.
pub(super) fn decode_state(
    point: &Point,
    blob: Bytes,
    segments: &mut impl state_file::Segments,
) -> Result<Held, Undecodable> {
    match point.metadata.state_layout {
        StateLayout::Blob => Ok(Held {
            operator_state: blob,
            key_groups: BTreeMap::new(),
        }),
        StateLayout::Grouped => state_file::decode_grouped(&blob).map_err(Undecodable::StateFile),
        StateLayout::Chained => {
            let decoded = state_file::decode(&blob).map_err(Undecodable::StateFile)?;
            decoded.load(segments).map_err(Undecodable::Segment)
        }
    }
}

fn segment_error(segment: &str) -> impl FnOnce(String) -> state_file::SegmentError + '_ {
    move |problem| state_file::SegmentError {
        segment: segment.to_owned(),
        problem,
    }
}

/// The segment files of a point being read, each read whole, once, through the capability on
/// the point's folder.
pub(super) struct SegmentFiles<'a> {
    pub(super) folder: &'a cap_std::fs::Dir,
    pub(super) read: HashMap<String, Bytes>,
}

impl state_file::Segments for SegmentFiles<'_> {
    fn bytes(&mut self, name: &str) -> Result<&Bytes, state_file::SegmentError> {
        if !self.read.contains_key(name) {
            let bytes = read_segment_file(self.folder, name).map_err(segment_error(name))?;
            self.read.insert(name.to_owned(), bytes.into());
        }
        Ok(&self.read[name])
    }
}

/// Segment file `name` of `folder`, refused unread past [`metadata::SEGMENT_BYTES_MAX`].
fn read_segment_file(folder: &cap_std::fs::Dir, name: &str) -> Result<Vec<u8>, String> {
    let file = folder.open(name).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let max = metadata::SEGMENT_BYTES_MAX;
    if len > max {
        return Err(format!(
            "{len} bytes: larger than any segment ({max} bytes at most)"
        ));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    io::Read::read_to_end(&mut io::Read::take(file.into_std(), max), &mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// The segments of a point on an object store being read, each fetched whole, once.
pub(super) struct ObjectSegments<'a> {
    pub(super) object: &'a ObjectPoints,
    pub(super) layout: &'a Layout,
    pub(super) point: &'a Point,
    pub(super) fetched: HashMap<String, Bytes>,
}

impl state_file::Segments for ObjectSegments<'_> {
    fn bytes(&mut self, name: &str) -> Result<&Bytes, state_file::SegmentError> {
        if !self.fetched.contains_key(name) {
            let location = self.point.dir.join(name);
            let max = metadata::SEGMENT_BYTES_MAX;
            let bytes = self.object.read_object_at_most(self.layout, &location, max);
            let bytes = bytes.map_err(|e| segment_error(name)(e.to_string()))?;
            self.fetched.insert(name.to_owned(), bytes);
        }
        Ok(&self.fetched[name])
    }
}

impl Store {
    /// The names of the files of the point at `location` (`_metadata`, state files, segments),
    /// sorted: what a copy of it holds. Folders inside it (an export's `modules/`) are not
    /// its files.
    pub fn point_files(&self, location: &std::path::Path) -> Result<Vec<String>, StoreError> {
        let mut names = match self.on_object_store(location) {
            Some(object) => object.names(&self.layout, location)?,
            None => {
                let mut names = Vec::new();
                let entries = std::fs::read_dir(location).map_err(super::io_error(location))?;
                for entry in entries {
                    let entry = entry.map_err(super::io_error(location))?;
                    let is_file = entry.file_type().map_err(super::io_error(location))?;
                    if let (true, Ok(name)) = (is_file.is_file(), entry.file_name().into_string()) {
                        names.push(name);
                    }
                }
                names
            }
        };
        names.sort();
        Ok(names)
    }

    /// File `name` of the point at `location`, whole.
    pub fn read_point_file(
        &self,
        location: &std::path::Path,
        name: &str,
    ) -> Result<Vec<u8>, StoreError> {
        let path = location.join(name);
        match self.on_object_store(location) {
            Some(object) => Ok(object.read_object(&self.layout, &path)?.to_vec()),
            None => std::fs::read(&path).map_err(super::io_error(&path)),
        }
    }
}

impl Store {
    /// Reads and verifies a point's `_metadata`.
    pub fn read_point(&self, dir: &Path) -> Result<Point, StoreError> {
        if let Some(object) = self.on_object_store(dir) {
            let Some(bytes) = object.read_metadata(&self.layout, dir)? else {
                return Err(StoreError::NotAPoint {
                    path: PathBuf::from(self.display(dir)),
                });
            };
            let path = PathBuf::from(self.display(&dir.join(METADATA_FILE)));
            let metadata =
                metadata::decode(&bytes).map_err(|source| StoreError::Metadata { path, source })?;
            return Ok(Point {
                dir: dir.to_owned(),
                metadata,
            });
        }
        let path = dir.join(METADATA_FILE);
        let file = match fs::File::open(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotAPoint {
                    path: dir.to_owned(),
                });
            }
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
        let metadata =
            metadata::decode(&bytes).map_err(|source| StoreError::Metadata { path, source })?;
        Ok(Point {
            dir: dir.to_owned(),
            metadata,
        })
    }

    /// Reads every state file of a point, verifying each length and checksum. The cheap checks
    /// come first, worst problem first: a missing file, then a wrong length, is reported before
    /// any file is read (so `_metadata` from another topology is named as such, and a damaged
    /// savepoint of many gigabytes is refused at once). In a folder, the files are opened
    /// through a capability on the point's folder, so a name in `_metadata` can never reach
    /// outside it; on an object store, each name is one segment of a key under the point's
    /// prefix, escaped, so it cannot either.
    pub fn read_states(&self, point: &Point) -> Result<States, StoreError> {
        let mut states = States::new();
        self.each_state(
            point,
            |_| true,
            |id, subtask, held| {
                states.insert((id.clone(), subtask), held);
                Ok::<_, StoreError>(())
            },
        )?;
        Ok(states)
    }

    /// Verifies every state file of a point as [`Store::read_states`] does, keeping none of
    /// them (`host inspect`): in a folder, one state file and its segments are in memory at a
    /// time, however large the point.
    pub fn verify_states(&self, point: &Point) -> Result<(), StoreError> {
        self.each_state(point, |_| true, |_, _, _held| Ok::<_, StoreError>(()))
    }

    /// Reads, verifies and decodes the state files of a point that `only` picks, in turn,
    /// handing each subtask's state to `take` (see [`Store::read_states`] for the order of the
    /// checks: every picked file's length is checked before any is read). In a folder, one
    /// state file and its segments are in memory at a time; the first error of `take` stops.
    pub fn each_state<E: From<StoreError>>(
        &self,
        point: &Point,
        only: impl Fn(&(&OperatorId, &StateFile)) -> bool,
        mut take: impl FnMut(&OperatorId, u32, Held) -> Result<(), E>,
    ) -> Result<(), E> {
        let files: Vec<(&OperatorId, &StateFile)> = point
            .metadata
            .operators
            .iter()
            .flat_map(|op| op.files.iter().map(move |file| (&op.id, file)))
            .filter(only)
            .collect();
        if let Some(object) = self.on_object_store(&point.dir) {
            let blobs = object.read_states(&self.layout, point, &files)?;
            for ((id, file), blob) in files.into_iter().zip(blobs) {
                // Each subtask's segments are its own: fetched for it, dropped after it.
                let mut segments = ObjectSegments {
                    object,
                    layout: &self.layout,
                    point,
                    fetched: HashMap::new(),
                };
                let held = decode_state(point, blob, &mut segments)
                    .map_err(|e| e.at(self, point, file))?;
                take(id, file.subtask, held)?;
            }
            return Ok(());
        }
        let folder = cap_std::fs::Dir::open_ambient_dir(&point.dir, cap_std::ambient_authority())
            .map_err(io_error(&point.dir))?;
        let path_of = |file: &StateFile| point.dir.join(&file.file);
        let lens = files.iter().map(|(_, file)| {
            let found = folder.metadata(&file.file);
            found.map(|m| m.len()).map_err(|e| e.to_string())
        });
        verify_lengths(&files, lens.collect(), &path_of)?;
        for (id, file) in files {
            let blob = folder
                .read(&file.file)
                .map_err(|e| corrupt(file, &path_of, e.to_string()))?;
            verify_blob(file, &blob, &path_of)?;
            let mut segments = SegmentFiles {
                folder: &folder,
                read: HashMap::new(),
            };
            let held = decode_state(point, blob.into(), &mut segments)
                .map_err(|e| e.at(self, point, file))?;
            take(id, file.subtask, held)?;
        }
        Ok(())
    }
}

/// A state file's problem, naming it.
fn corrupt(
    file: &StateFile,
    path_of: &dyn Fn(&StateFile) -> PathBuf,
    problem: String,
) -> StoreError {
    StoreError::CorruptState {
        path: path_of(file),
        problem,
    }
}

/// The first checks of a point's state files, for every back-end: each file was `found` (its
/// length, or why not), and with the length `_metadata` says. A missing file is reported before
/// any wrong length. Performs no I/O.
pub(crate) fn verify_lengths(
    files: &[(&OperatorId, &StateFile)],
    found: Vec<Result<u64, String>>,
    path_of: &dyn Fn(&StateFile) -> PathBuf,
) -> Result<Vec<u64>, StoreError> {
    assert_eq!(files.len(), found.len(), "one finding per file");
    let mut lens = Vec::with_capacity(files.len());
    for ((_, file), len) in files.iter().zip(found) {
        lens.push(len.map_err(|problem| corrupt(file, path_of, problem))?);
    }
    for ((_, file), &len) in files.iter().zip(&lens) {
        if len != file.len {
            let problem = format!("{len} bytes, metadata says {}", file.len);
            return Err(corrupt(file, path_of, problem));
        }
        if len > metadata::STATE_FILE_BYTES_MAX {
            let max = metadata::STATE_FILE_BYTES_MAX;
            let problem = format!("{len} bytes: larger than any state file ({max} bytes at most)");
            return Err(corrupt(file, path_of, problem));
        }
    }
    Ok(lens)
}

/// The last check of a state file, for every back-end: its bytes have the length and
/// checksum `_metadata` says. Performs no I/O.
pub(crate) fn verify_blob(
    file: &StateFile,
    blob: &[u8],
    path_of: &dyn Fn(&StateFile) -> PathBuf,
) -> Result<(), StoreError> {
    if blob.len() as u64 != file.len {
        let problem = format!("{} bytes read, metadata says {}", blob.len(), file.len);
        return Err(corrupt(file, path_of, problem));
    }
    if crate::checksum::checksum(blob) != file.checksum {
        return Err(corrupt(file, path_of, "checksum mismatch".to_owned()));
    }
    Ok(())
}
