//! [`ObjectPoints`] as a [`PointStore`]: how each of the store's operations runs on an object
//! store (the requests themselves are [`super`]'s, its leases [`super::lease`]'s).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path as Key;

use super::super::backend::{Faults, PointStore, StateWrite, TakeState};
use super::super::fence::Lease;
use super::super::layout::METADATA_FILE;
use super::super::metadata::{self, METADATA_BYTES_MAX, MetadataError};
use super::super::state_file;
use super::super::{Layout, Metadata, Point, StateFault, StateFile, StoreError};
use super::{ObjectPoints, PutStep, STATE_READS_PARALLEL_MAX, not_found, object_error};
use crate::fault::Phase;
use crate::ids::{CheckpointId, JobId, OperatorId, SavepointId};

impl PointStore for ObjectPoints {
    fn holds(&self, location: &Path) -> bool {
        self.key(location).is_some()
    }

    fn display(&self, location: &Path) -> String {
        match self.key(location) {
            Some(key) => self.url_of(&key),
            None => location.display().to_string(),
        }
    }

    fn location_of_url(&self, url: &Path) -> Option<PathBuf> {
        let url = url.to_str()?;
        let base = self.url().to_string();
        let relative = url.strip_prefix(&base)?.strip_prefix('/')?;
        let location = self.layout.root().join(relative.trim_end_matches('/'));
        self.layout.relative(&location).map(|_| location)
    }

    fn local_path<'l>(&self, _location: &'l Path) -> Option<&'l Path> {
        None
    }

    fn shared(&self) -> bool {
        true
    }

    fn create_lease(&self, job: &JobId, lease: Lease) -> Result<(), StoreError> {
        self.create_lease_object(job, lease)
    }

    fn take_over(&self, job: &JobId, holder: String) -> Result<Option<u64>, StoreError> {
        let generation = self.raise_lease(job, holder)?;
        tracing::info!(%job, generation, "took the job's lease over");
        // What a crash of the old process left: never published, and now it never will be
        // (a publish already past its first fence check finds the point abandoned).
        for checkpoint in self.leftovers(job)? {
            let location = self.layout.checkpoint(job, checkpoint);
            let shown = self.display(&location);
            tracing::info!("removing {shown}: a point never published");
            self.abandon_unpublished(&location)?;
        }
        Ok(Some(generation))
    }

    fn release_lease(&self, job: &JobId) -> Result<(), StoreError> {
        self.release_lease_object(job)
    }

    fn lease(&self, job: &JobId) -> Result<Option<Lease>, StoreError> {
        let key = self.key_of(&self.layout.lease(job));
        Ok(self.read_lease(&key)?.map(|(lease, _)| lease))
    }

    fn held(&self, job: &JobId) -> u64 {
        let held = self.held.lock().expect("not poisoned");
        held.get(job).copied().unwrap_or(0)
    }

    fn jobs(&self) -> Result<Vec<JobId>, StoreError> {
        let prefix = self.key_of(&self.layout.jobs());
        let (store, url) = (self.store.clone(), self.url_of(&prefix));
        let listed = self
            .run(async move { store.list_with_delimiter(Some(&prefix)).await })
            .map_err(object_error(url))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|key| key.filename()?.parse().ok())
            .collect())
    }

    fn has_job(&self, job: &JobId) -> Result<bool, StoreError> {
        Ok(!self.list(self.key_of(&self.layout.job(job)))?.is_empty())
    }

    fn checkpoints(&self, job: &JobId) -> Result<Vec<CheckpointId>, StoreError> {
        let names = self.published_below(self.key_of(&self.layout.checkpoints(job)))?;
        Ok(names
            .iter()
            .filter_map(|name| Layout::parse_checkpoint_name(name))
            .collect())
    }

    fn savepoint_ids(&self) -> Result<Vec<SavepointId>, StoreError> {
        let names = self.published_below(self.key_of(&self.layout.savepoints()))?;
        Ok(names.iter().filter_map(|name| name.parse().ok()).collect())
    }

    fn has_point(&self, location: &Path) -> Result<bool, StoreError> {
        let key = self.key_of(location).join(METADATA_FILE);
        let (store, url) = (self.store.clone(), self.url_of(&key));
        match self.run(async move { store.head(&key).await }) {
            // Empty: abandoned by a takeover ([`ObjectPoints::abandon_unpublished`]).
            Ok(meta) => Ok(meta.size > 0),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(object_error(url)(e)),
        }
    }

    fn point_bytes(&self, location: &Path) -> u64 {
        let objects = self.list(self.key_of(location));
        objects.map_or(0, |objects| objects.iter().map(|(_, size)| size).sum())
    }

    fn point_files(&self, location: &Path) -> Result<Vec<String>, StoreError> {
        self.names(location)
    }

    fn read_point_file(&self, location: &Path, name: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.read_object(&location.join(name))?.to_vec())
    }

    /// Refuses a `_metadata` larger than [`METADATA_BYTES_MAX`] before reading it; an empty one
    /// (abandoned by a takeover) is no point.
    fn read_metadata(&self, location: &Path) -> Result<Option<Vec<u8>>, StoreError> {
        let key = self.key_of(location).join(METADATA_FILE);
        let (store, url) = (self.store.clone(), self.url_of(&key));
        let read = self.run(async move {
            let got = store.get(&key).await?;
            if got.meta.size > METADATA_BYTES_MAX {
                return Ok(Err(got.meta.size));
            }
            Ok(Ok(got.bytes().await?))
        });
        match read {
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(object_error(url)(e)),
            Ok(Err(len)) => Err(StoreError::Metadata {
                path: PathBuf::from(url),
                source: MetadataError::TooLarge(len),
            }),
            // Empty: abandoned by a takeover, never published.
            Ok(Ok(bytes)) if bytes.is_empty() => Ok(None),
            Ok(Ok(bytes)) => Ok(Some(bytes.to_vec())),
        }
    }

    /// Every state object is read at once (at most [`STATE_READS_PARALLEL_MAX`] in flight);
    /// each name is one segment of a key under the point's prefix, escaped, so that it cannot
    /// reach outside it. Segments are fetched whole, once, as a state file names them.
    fn read_states(&self, point: &Point, take: &mut TakeState<'_>) -> Result<(), StoreError> {
        let blobs = self.read_state_objects(point, &point.state_files())?;
        let mut segments = ObjectSegments {
            object: self,
            point,
            fetched: HashMap::new(),
        };
        for (n, blob) in blobs.into_iter().enumerate() {
            take(n, blob, &mut segments)?;
        }
        Ok(())
    }

    fn remove_point(&self, location: &Path) -> Result<(), StoreError> {
        let keys = self.list(self.key_of(location))?;
        self.delete_all(keys.into_iter().map(|(key, _)| key).collect())
    }

    /// The objects go straight under the checkpoint's own prefix, unlisted until its
    /// `_metadata`; earlier segments are copied server-side (an object store has no hard
    /// links: there, each point holds its own copy).
    fn write_state(&self, write: &StateWrite<'_>) -> Result<(), StoreError> {
        let StateWrite {
            encoded, earlier, ..
        } = write;
        let at = self.layout.checkpoint(write.job, write.checkpoint);
        for (name, pieces) in &encoded.segments {
            let to = at.join(name);
            let copied = earlier(name).map(|from| self.copy_if_present(&from, &to));
            if !copied.transpose()?.unwrap_or(false) {
                let bytes = Bytes::from(state_file::segment_bytes(pieces).to_vec());
                self.put_state(&to, bytes, || Ok(()))?;
            }
        }
        // A fault at this phase strikes halfway through the state file's upload.
        // One copy: the object store sends one contiguous body.
        let joined = Bytes::from(encoded.state_file.to_vec());
        self.put_state(&at.join(write.file), joined, write.midway)
    }

    fn publish(&self, metadata: &Metadata, to: &Path, faults: &Faults) -> Result<(), StoreError> {
        let bytes = metadata::encode_checked(metadata);
        let (job, checkpoint) = (&metadata.job, metadata.checkpoint);
        let written = self.layout.checkpoint(job, checkpoint);
        if written != to {
            // A savepoint: its own copy of every state file and segment, before its
            // `_metadata`.
            let names = self.names(&written)?;
            self.copy_states(&written, to, names)?;
        }
        // On an object store, the `_metadata` put is the publication: a crash at this phase
        // strikes right before it, with every state object written.
        self.put_metadata(to, job, checkpoint, bytes, |step| match step {
            PutStep::Before => faults(Phase::MetadataWritten),
            PutStep::After => faults(Phase::MetadataPut),
        })?;
        if written != to {
            self.remove_point(&written)?;
        }
        Ok(())
    }

    fn abort(&self, job: &JobId, checkpoint: CheckpointId) -> Result<(), StoreError> {
        // Published already (the fence refused only the commit): it stays.
        self.remove_unpublished(&self.layout.checkpoint(job, checkpoint))
    }

    /// One create-only put: content-addressed, so the bytes under one name never differ.
    fn put_module(&self, sha256: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        let bytes = Bytes::copy_from_slice(bytes);
        self.put_if_absent(&self.layout.module(sha256), bytes)
    }

    fn read_module(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match self.read_object(&self.layout.module(sha256)) {
            Ok(bytes) => Ok(Some(bytes.to_vec())),
            Err(StoreError::Object { source, .. }) if not_found(&source) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn module_names(&self) -> Result<Vec<String>, StoreError> {
        self.names(&self.layout.modules())
    }

    fn remove_module(&self, sha256: &str) -> Result<(), StoreError> {
        self.remove_object(&self.layout.module(sha256))
    }
}

impl ObjectPoints {
    /// Reads every state object of `point`, at most [`STATE_READS_PARALLEL_MAX`] at once,
    /// through the checks every back-end shares ([`super::super::verify_lengths`],
    /// [`super::super::verify_blob`]).
    fn read_state_objects(
        &self,
        point: &Point,
        files: &[(&OperatorId, &StateFile)],
    ) -> Result<Vec<Bytes>, StoreError> {
        let prefix = self.key_of(&point.dir);
        let sizes: BTreeMap<Key, u64> = self.list(prefix.clone())?.into_iter().collect();
        let path_of =
            |file: &StateFile| PathBuf::from(self.url_of(&prefix.clone().join(file.file.as_str())));
        let found = files.iter().map(|(_, file)| {
            let key = prefix.clone().join(file.file.as_str());
            sizes.get(&key).copied().ok_or(StateFault::NoSuchObject)
        });
        super::super::verify_lengths(files, found.collect(), &path_of)?;
        let keys: Vec<(usize, Key)> = files
            .iter()
            .enumerate()
            .map(|(n, (_, file))| (n, prefix.clone().join(file.file.as_str())))
            .collect();
        let (store, url) = (self.store.clone(), self.url_of(&prefix));
        let mut blobs: Vec<(usize, Bytes)> = self
            .run(async move {
                futures::stream::iter(keys)
                    .map(|(n, key)| {
                        let store = store.clone();
                        async move {
                            Ok::<_, object_store::Error>((n, store.get(&key).await?.bytes().await?))
                        }
                    })
                    .buffer_unordered(STATE_READS_PARALLEL_MAX)
                    .try_collect()
                    .await
            })
            .map_err(object_error(url))?;
        blobs.sort_by_key(|(n, _)| *n);
        for ((_, file), (_, blob)) in files.iter().zip(&blobs) {
            super::super::verify_blob(file, blob, &path_of)?;
        }
        Ok(blobs.into_iter().map(|(_, blob)| blob).collect())
    }
}

/// The segments of a point on an object store being read, each fetched whole, once.
struct ObjectSegments<'a> {
    object: &'a ObjectPoints,
    point: &'a Point,
    fetched: HashMap<String, Bytes>,
}

impl state_file::Segments for ObjectSegments<'_> {
    fn bytes(&mut self, name: &str) -> Result<&Bytes, state_file::SegmentError> {
        if !self.fetched.contains_key(name) {
            let location = self.point.dir.join(name);
            let max = metadata::SEGMENT_BYTES_MAX;
            let bytes = self.object.read_object_at_most(&location, max);
            let bytes = bytes.map_err(|e| state_file::SegmentError {
                segment: name.to_owned(),
                fault: state_file::SegmentFault::Unfetched(Box::new(e)),
            })?;
            self.fetched.insert(name.to_owned(), bytes);
        }
        Ok(&self.fetched[name])
    }
}
