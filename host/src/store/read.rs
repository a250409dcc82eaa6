//! Reading a point back: its `_metadata` verified ([`Store::read_point`]), then its state
//! files ([`Store::read_states`]), every check shared by both back-ends ([`verify_lengths`],
//! [`verify_blob`]); each state file decoded as the point's layout has it, and,
//! in format 3, its segments read whole (from the point's folder, or from the object store:
//! the back-end's [`super::backend::PointStore::read_states`]) and verified before any piece
//! is taken from them.

use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::layout::METADATA_FILE;
use super::{Point, StateFile, StateLayout, States, Store, StoreError, metadata, state_file};
use crate::ids::OperatorId;
use crate::snapshot::Held;

/// Why a state file, verified, does not give its state: the file, or a segment, at fault.
enum Undecodable {
    StateFile(state_file::StateFileError),
    Segment(state_file::SegmentError),
}

impl Undecodable {
    fn at(self, store: &Store, point: &Point, file: &StateFile) -> StoreError {
        let (location, fault) = match self {
            Undecodable::StateFile(e) => (point.dir.join(&file.file), StateFault::Undecodable(e)),
            Undecodable::Segment(e) => (point.dir.join(e.segment), StateFault::Segment(e.fault)),
        };
        let path = PathBuf::from(store.display(&location));
        StoreError::CorruptState { path, fault }
    }
}

/// What is wrong with a state file, or with a segment it names, as read back.
#[derive(Debug, thiserror::Error)]
pub enum StateFault {
    /// Its file cannot be read, or its length cannot be known.
    #[error("{0}")]
    Unreadable(std::io::Error),
    /// The object store holds no object by its name.
    #[error("no such object")]
    NoSuchObject,
    /// Its length is not the one `_metadata` says.
    #[error("{len} bytes, metadata says {expected}")]
    Length {
        /// Its length.
        len: u64,
        /// The length `_metadata` says.
        expected: u64,
    },
    /// It is longer than any state file is.
    #[error("{len} bytes: larger than any state file ({max} bytes at most)")]
    TooLarge {
        /// Its length.
        len: u64,
        /// The longest a state file may be.
        max: u64,
    },
    /// Fewer or more bytes were read than `_metadata` says.
    #[error("{read} bytes read, metadata says {expected}")]
    ReadLength {
        /// The bytes read.
        read: u64,
        /// The length `_metadata` says.
        expected: u64,
    },
    /// Its bytes are not the ones `_metadata`'s checksum says.
    #[error("checksum mismatch")]
    Checksum,
    /// Verified, it does not decode.
    #[error("{0}")]
    Undecodable(state_file::StateFileError),
    /// A segment it names is at fault (the error's path is the segment's).
    #[error("{0}")]
    Segment(state_file::SegmentFault),
}

/// A subtask's state from its verified state file, as the point's layout has it; in format 3,
/// its pieces taken from `segments` (in the point's folder, or on the object store), each
/// segment verified whole.
fn decode_state(
    point: &Point,
    blob: Bytes,
    segments: &mut (impl state_file::Segments + ?Sized),
) -> Result<Held, Undecodable> {
    match point.metadata.state_layout {
        StateLayout::Blob => Ok(Held {
            operator_state: blob,
            ..Held::default()
        }),
        StateLayout::Grouped => state_file::decode_grouped(&blob).map_err(Undecodable::StateFile),
        StateLayout::Chained | StateLayout::Timed => {
            let decode = match point.metadata.state_layout {
                StateLayout::Chained => state_file::decode_format_3,
                _ => state_file::decode,
            };
            let decoded = decode(&blob).map_err(Undecodable::StateFile)?;
            decoded.load(segments).map_err(Undecodable::Segment)
        }
    }
}

impl Store {
    /// The names of the files of the point at `location` (`_metadata`, state files, segments),
    /// sorted: what a copy of it holds. Folders inside it (an export's `modules/`) are not
    /// its files.
    pub fn point_files(&self, location: &Path) -> Result<Vec<String>, StoreError> {
        let mut names = self.at_location(location).point_files(location)?;
        names.sort();
        Ok(names)
    }

    /// File `name` of the point at `location`, whole.
    pub fn read_point_file(&self, location: &Path, name: &str) -> Result<Vec<u8>, StoreError> {
        self.at_location(location).read_point_file(location, name)
    }

    /// Reads and verifies a point's `_metadata`.
    pub fn read_point(&self, dir: &Path) -> Result<Point, StoreError> {
        let at = self.at_location(dir);
        let Some(bytes) = at.read_metadata(dir)? else {
            return Err(StoreError::NotAPoint {
                path: PathBuf::from(self.display(dir)),
            });
        };
        let path = PathBuf::from(self.display(&dir.join(METADATA_FILE)));
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
    /// savepoint of many gigabytes is refused at once). No name in `_metadata` can reach
    /// outside the point (the back-end's [`super::backend::PointStore::read_states`] says how).
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
        // The point as if it held only the files picked: the back-end reads those alone.
        let mut picked = point.clone();
        for op in &mut picked.metadata.operators {
            let id = op.id.clone();
            op.files.retain(|file| only(&(&id, file)));
        }
        let files = picked.state_files();
        // `take`'s first error, kept: the files after it are read, but not taken.
        let mut failed: Option<E> = None;
        let mut decode = |n: usize, blob: Bytes, segments: &mut dyn state_file::Segments| {
            let (id, file) = files[n];
            let held = decode_state(point, blob, segments).map_err(|e| e.at(self, point, file))?;
            if failed.is_none() {
                failed = take(id, file.subtask, held).err();
            }
            Ok(())
        };
        let read = self
            .at_location(&point.dir)
            .read_states(&picked, &mut decode);
        match (read, failed) {
            (_, Some(e)) => Err(e),
            (read, None) => read.map_err(E::from),
        }
    }
}

/// A state file's fault, naming it.
pub(super) fn corrupt(
    file: &StateFile,
    path_of: &dyn Fn(&StateFile) -> PathBuf,
    fault: StateFault,
) -> StoreError {
    StoreError::CorruptState {
        path: path_of(file),
        fault,
    }
}

/// The first checks of a point's state files, for every back-end: each file was `found` (its
/// length, or why not), and with the length `_metadata` says. A missing file is reported before
/// any wrong length. Performs no I/O.
pub(crate) fn verify_lengths(
    files: &[(&OperatorId, &StateFile)],
    found: Vec<Result<u64, StateFault>>,
    path_of: &dyn Fn(&StateFile) -> PathBuf,
) -> Result<Vec<u64>, StoreError> {
    assert_eq!(files.len(), found.len(), "one finding per file");
    let mut lens = Vec::with_capacity(files.len());
    for ((_, file), len) in files.iter().zip(found) {
        lens.push(len.map_err(|fault| corrupt(file, path_of, fault))?);
    }
    for ((_, file), &len) in files.iter().zip(&lens) {
        if len != file.len {
            let fault = StateFault::Length {
                len,
                expected: file.len,
            };
            return Err(corrupt(file, path_of, fault));
        }
        if len > metadata::STATE_FILE_BYTES_MAX {
            let max = metadata::STATE_FILE_BYTES_MAX;
            return Err(corrupt(file, path_of, StateFault::TooLarge { len, max }));
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
        let fault = StateFault::ReadLength {
            read: blob.len() as u64,
            expected: file.len,
        };
        return Err(corrupt(file, path_of, fault));
    }
    if crate::checksum::checksum(blob) != file.checksum {
        return Err(corrupt(file, path_of, StateFault::Checksum));
    }
    Ok(())
}
