//! Reading a point's state back: each state file decoded as the point's layout has it, and,
//! in format 3, its segments read whole (from the point's folder, or from the object store)
//! and verified before any piece is taken from them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use super::object::ObjectPoints;
use super::{Layout, Point, StateFile, StateLayout, Store, StoreError, state_file};
use crate::snapshot::Held;

/// Why a state file, verified, does not give its state: the file, or a segment, at fault.
pub(super) enum Undecodable {
    StateFile(String),
    Segment(state_file::SegmentError),
}

impl Undecodable {
    pub(super) fn at(self, store: &Store, point: &Point, file: &StateFile) -> StoreError {
        let (location, problem) = match self {
            Undecodable::StateFile(problem) => (point.dir.join(&file.file), problem),
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
    blob: Vec<u8>,
    segments: &mut impl state_file::Segments,
) -> Result<Held, Undecodable> {
    match point.metadata.state_layout {
        StateLayout::Blob => Ok(Held {
            operator_state: blob.into(),
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
    pub(super) read: HashMap<String, Vec<u8>>,
}

impl state_file::Segments for SegmentFiles<'_> {
    fn bytes(&mut self, name: &str) -> Result<&[u8], state_file::SegmentError> {
        if !self.read.contains_key(name) {
            let bytes = self.folder.read(name);
            let bytes = bytes.map_err(|e| segment_error(name)(e.to_string()))?;
            self.read.insert(name.to_owned(), bytes);
        }
        Ok(&self.read[name])
    }
}

/// The segments of a point on an object store being read, each fetched whole, once.
pub(super) struct ObjectSegments<'a> {
    pub(super) object: &'a ObjectPoints,
    pub(super) layout: &'a Layout,
    pub(super) point: &'a Point,
    pub(super) fetched: HashMap<String, bytes::Bytes>,
}

impl state_file::Segments for ObjectSegments<'_> {
    fn bytes(&mut self, name: &str) -> Result<&[u8], state_file::SegmentError> {
        if !self.fetched.contains_key(name) {
            let location = self.point.dir.join(name);
            let bytes = self.object.read_object(self.layout, &location);
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
