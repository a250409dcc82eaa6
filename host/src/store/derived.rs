//! Writing a point that no job wrote: a savepoint made offline by `host state` (an edit of
//! another point, a repartition, a bootstrap from data), some subtasks' state new, every other
//! file shared with the point it came from, as a checkpoint shares the segments of the one
//! before it: hard links in a folder, server-side copies on an object store.
//!
//! The durability steps are a checkpoint's: in a folder, the files go into a temporary folder
//! beside the target, each fsynced, then `_metadata`, then the folder is renamed into place (a
//! crash leaves no half point under the target's name); on an object store, `_metadata` is
//! written last, if absent, and publishes the point. A failure removes what was written.
//! Nothing of the original point is ever written.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::layout::METADATA_FILE;
use super::{
    Layout, Metadata, Point, StateFile, Store, StoreError, io_error, metadata, state_file,
};
use crate::durable;
use crate::ids::OperatorId;
use crate::snapshot::Held;

/// New states of a derived point, by operator and subtask; every other subtask keeps its file.
pub type NewStates = BTreeMap<(OperatorId, u32), Held>;

/// What a derived point's files were made of.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    /// Files written new (state files, segments, `_metadata`).
    pub new_files: usize,
    /// Bytes written new.
    pub new_bytes: u64,
    /// Files shared with the original point (linked or copied server-side).
    pub shared_files: usize,
}

impl Store {
    /// Writes the point `metadata` describes at `to`, which must not exist: the subtasks in
    /// `states` with that state (each piece not stored yet written into the subtask's own new
    /// segment, named after `metadata`'s job and checkpoint), every other subtask's state file
    /// and segments shared with `from`. Fills in the length and checksum of each new state
    /// file in `metadata`.
    pub fn write_derived(
        &self,
        from: Option<&Point>,
        to: &Path,
        metadata: &mut Metadata,
        states: NewStates,
    ) -> Result<Written, StoreError> {
        if self.has_point(to)? || to.exists() {
            let source = io::Error::from(io::ErrorKind::AlreadyExists);
            return Err(io_error(&PathBuf::from(self.display(to)))(source));
        }
        let target = match self.on_object_store(to) {
            Some(_) => Target::Object(to.to_owned()),
            None => {
                let parent = to.parent().expect("a point's folder has a parent");
                durable::create_dir(parent).map_err(io_error(parent))?;
                // Owner-only (0700), as every point folder the host writes.
                let building = tempfile::Builder::new()
                    .prefix(".derived-")
                    .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
                    .tempdir_in(parent)
                    .map_err(io_error(parent))?;
                Target::Folder(building)
            }
        };
        let written = self.write_files(from, &target, metadata, states);
        let written =
            written.and_then(|written| self.publish_derived(target, to, metadata, written));
        if written.is_err()
            && let Some(object) = self.on_object_store(to)
        {
            // Best effort: an unpublished point is invisible, and this removes its objects.
            let _ = object.remove_unpublished(&self.layout, to);
        }
        written
    }

    fn write_files(
        &self,
        from: Option<&Point>,
        target: &Target,
        metadata: &mut Metadata,
        mut states: NewStates,
    ) -> Result<Written, StoreError> {
        let mut written = Written::default();
        let (job, checkpoint) = (metadata.job.clone(), metadata.checkpoint);
        for op in &mut metadata.operators {
            for file in &mut op.files {
                let Some(mut held) = states.remove(&(op.id.clone(), file.subtask)) else {
                    let from = from.expect("a point made from nothing has every state new");
                    self.share_state_file(from, target, file, &mut written)?;
                    continue;
                };
                let own = Layout::segment_file_name(&job, checkpoint, op.id.as_str(), file.subtask);
                held.home_new_pieces(&own, checkpoint.0);
                let encoded = state_file::encode(&held);
                for (name, pieces) in &encoded.segments {
                    if *name == own {
                        let bytes = state_file::segment_bytes(pieces);
                        self.write_new(target, name, &bytes.parts(), &mut written)?;
                    } else {
                        let from = from.expect("a piece stored already lies in the original");
                        self.share(from, target, name, &mut written)?;
                    }
                }
                let blob = &encoded.state_file;
                self.write_new(target, &file.file, &blob.parts(), &mut written)?;
                (file.len, file.checksum) = (blob.len() as u64, blob.checksum());
            }
        }
        assert!(
            states.is_empty(),
            "every new state belongs to a subtask of the point"
        );
        Ok(written)
    }

    /// Shares a subtask's state file of `from`, and the segments it names.
    fn share_state_file(
        &self,
        from: &Point,
        target: &Target,
        file: &StateFile,
        written: &mut Written,
    ) -> Result<(), StoreError> {
        if from.metadata.state_layout == super::StateLayout::Chained {
            let bytes = Bytes::from(self.read_point_file(&from.dir, &file.file)?);
            let path_of =
                |file: &StateFile| PathBuf::from(self.display(&from.dir.join(&file.file)));
            // Pair assertion: what is shared is what `_metadata` says it is.
            super::verify_blob(file, &bytes, &path_of)?;
            let decoded = state_file::decode(&bytes)
                .map_err(|e| super::read::Undecodable::StateFile(e).at(self, from, file))?;
            for segment in decoded.segment_names() {
                self.share(from, target, segment, written)?;
            }
        }
        self.share(from, target, &file.file, written)
    }

    /// Shares file `name` of `from`: a hard link (a copy across file systems), a server-side
    /// copy, or, between a folder and an object store, a copy of its bytes.
    fn share(
        &self,
        from: &Point,
        target: &Target,
        name: &str,
        written: &mut Written,
    ) -> Result<(), StoreError> {
        let source = from.dir.join(name);
        written.shared_files += 1;
        match target {
            Target::Folder(building) => {
                let to = building.path().join(name);
                if let Some(object) = self.on_object_store(&from.dir) {
                    let bytes = object.read_object(&self.layout, &source)?;
                    return durable::write_file_in_building_dir(&to, &[&bytes], || Ok(()))
                        .map_err(io_error(&to));
                }
                match durable::link_in_building_dir(&source, &to) {
                    Err(e) if e.kind() == io::ErrorKind::CrossesDevices => {
                        let bytes = std::fs::read(&source).map_err(io_error(&source))?;
                        durable::write_file_in_building_dir(&to, &[&bytes], || Ok(()))
                            .map_err(io_error(&to))
                    }
                    linked => linked.map_err(io_error(&to)),
                }
            }
            Target::Object(to) => {
                let object = self.object().expect("an object target has an object store");
                let to = to.join(name);
                if self.on_object_store(&from.dir).is_some() {
                    if object.copy_if_present(&self.layout, &source, &to)? {
                        return Ok(());
                    }
                    let missing = io::Error::from(io::ErrorKind::NotFound);
                    return Err(io_error(&PathBuf::from(self.display(&source)))(missing));
                }
                let bytes = std::fs::read(&source).map_err(io_error(&source))?;
                object.write_state(&self.layout, &to, bytes.into(), || Ok(()))
            }
        }
    }

    fn write_new(
        &self,
        target: &Target,
        name: &str,
        parts: &[&[u8]],
        written: &mut Written,
    ) -> Result<(), StoreError> {
        written.new_files += 1;
        written.new_bytes += parts.iter().map(|p| p.len() as u64).sum::<u64>();
        match target {
            Target::Folder(building) => {
                let path = building.path().join(name);
                durable::write_file_in_building_dir(&path, parts, || Ok(()))
                    .map_err(io_error(&path))
            }
            Target::Object(to) => {
                let object = self.object().expect("an object target has an object store");
                let bytes = Bytes::from(parts.concat());
                object.write_state(&self.layout, &to.join(name), bytes, || Ok(()))
            }
        }
    }

    /// Writes `_metadata`, last, and publishes the point at `to`.
    fn publish_derived(
        &self,
        target: Target,
        to: &Path,
        metadata: &Metadata,
        mut written: Written,
    ) -> Result<Written, StoreError> {
        let bytes = metadata::encode(metadata);
        // Pair assertion: what is about to be written must decode to what was meant.
        assert_eq!(
            metadata::decode(&bytes).as_ref(),
            Ok(metadata),
            "metadata round trip"
        );
        written.new_files += 1;
        written.new_bytes += bytes.len() as u64;
        match target {
            Target::Folder(building) => {
                let path = building.path().join(METADATA_FILE);
                durable::write_file_in_building_dir(&path, &[&bytes], || Ok(()))
                    .map_err(io_error(&path))?;
                // Until this rename, a crash leaves only a temporary folder no reader lists.
                let built = building.keep();
                let published = durable::publish_dir(&built, to).map_err(io_error(to));
                if published.is_err() {
                    let _ = std::fs::remove_dir_all(&built);
                }
                published?;
            }
            Target::Object(to) => {
                let object = self.object().expect("an object target has an object store");
                // `If-None-Match: *`: the put that publishes, never over another point.
                if !object.put_if_absent(&self.layout, &to.join(METADATA_FILE), bytes.into())? {
                    let exists = io::Error::from(io::ErrorKind::AlreadyExists);
                    return Err(io_error(&PathBuf::from(self.display(&to)))(exists));
                }
            }
        }
        Ok(written)
    }
}

/// Where a derived point is being written.
enum Target {
    /// A temporary folder beside the target folder, renamed into place once complete.
    Folder(tempfile::TempDir),
    /// The target's own location on the object store, published by its `_metadata`.
    Object(PathBuf),
}
