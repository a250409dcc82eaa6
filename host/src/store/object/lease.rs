//! A job's lease on an object store: created with the job, raised by a takeover, and checked
//! around each `_metadata` put, so that a process whose job was taken over cannot publish
//! (the generation fence; its decisions are [`super::super::fence`]'s).

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutMode, PutOptions, UpdateVersion};

use super::super::backend::PointStore;
use super::super::fence::{self, Fence, Lease};
use super::{LEASE_RACES_MAX, ObjectPoints, not_found, object_error};
use crate::ids::{CheckpointId, JobId};
use crate::store::StoreError;

impl ObjectPoints {
    /// Reads a job's lease and its version (`None`: it has none).
    pub(super) fn read_lease(
        &self,
        key: &Key,
    ) -> Result<Option<(Lease, UpdateVersion)>, StoreError> {
        let (store, url) = (self.store.clone(), self.url_of(key));
        let key = key.clone();
        let got = self.run(async move {
            let got = store.get(&key).await?;
            let version = UpdateVersion {
                e_tag: got.meta.e_tag.clone(),
                version: got.meta.version.clone(),
            };
            Ok::<_, object_store::Error>((got.bytes().await?, version))
        });
        match got {
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(object_error(url)(e)),
            Ok((bytes, version)) => {
                let lease = fence::decode(&bytes).map_err(|e| StoreError::Io {
                    path: PathBuf::from(url),
                    source: io::Error::new(io::ErrorKind::InvalidData, e),
                })?;
                Ok(Some((lease, version)))
            }
        }
    }

    /// Creates `lease`, of a job this process starts, create-only, and holds its generation.
    pub(super) fn create_lease_object(&self, job: &JobId, lease: Lease) -> Result<(), StoreError> {
        let key = self.key_of(&self.layout.lease(job));
        let generation = lease.generation;
        let (store, url) = (self.store.clone(), self.url_of(&key));
        let bytes = Bytes::from(fence::encode(&lease));
        self.run(async move {
            store
                .put_opts(&key, bytes.into(), PutOptions::from(PutMode::Create))
                .await
        })
        .map_err(object_error(url))?;
        self.held
            .lock()
            .expect("not poisoned")
            .insert(job.clone(), generation);
        Ok(())
    }

    /// Marks the lease of `job`, which this process ran and no longer runs, as not running,
    /// if it still holds it (a lease taken over, or changed meanwhile, is left as it is).
    pub(super) fn release_lease_object(&self, job: &JobId) -> Result<(), StoreError> {
        let key = self.key_of(&self.layout.lease(job));
        let Some((mut lease, version)) = self.read_lease(&key)? else {
            return Ok(());
        };
        if lease.generation != self.held(job) || !lease.running {
            return Ok(());
        }
        lease.running = false;
        let (store, url) = (self.store.clone(), self.url_of(&key));
        let bytes = Bytes::from(fence::encode(&lease));
        let put = self.run(async move {
            let options = PutOptions::from(PutMode::Update(version));
            store.put_opts(&key, bytes.into(), options).await
        });
        match put {
            Ok(_) | Err(object_store::Error::Precondition { .. }) => Ok(()),
            Err(e) => Err(object_error(url)(e)),
        }
    }

    /// Takes `job` over: raises its lease's generation by a put conditional on the version
    /// read, retrying if another process changed it meanwhile. Returns the new generation.
    pub(super) fn raise_lease(&self, job: &JobId, holder: String) -> Result<u64, StoreError> {
        let key = self.key_of(&self.layout.lease(job));
        let mut races = 0;
        loop {
            let now = self.read_lease(&key)?;
            let lease = fence::taken_over(now.as_ref().map(|(l, _)| l), holder.clone());
            let mode = match now {
                Some((_, version)) => PutMode::Update(version),
                None => PutMode::Create,
            };
            let (store, key2, url) = (self.store.clone(), key.clone(), self.url_of(&key));
            let bytes = Bytes::from(fence::encode(&lease));
            let put = self.run(async move {
                store
                    .put_opts(&key2, bytes.into(), PutOptions::from(mode))
                    .await
            });
            match put {
                Ok(_) => return Ok(lease.generation),
                Err(
                    object_store::Error::Precondition { .. }
                    | object_store::Error::AlreadyExists { .. },
                ) if races < LEASE_RACES_MAX => races += 1,
                Err(e) => return Err(object_error(url)(e)),
            }
        }
    }

    /// Refuses with [`StoreError::Fenced`] unless the lease of `job` holds the generation this
    /// process holds ([`fence::decide`]).
    pub(super) fn check_fence(
        &self,
        job: &JobId,
        checkpoint: CheckpointId,
    ) -> Result<(), StoreError> {
        let held = self.held(job);
        let key = self.key_of(&self.layout.lease(job));
        let now = self.read_lease(&key)?.map(|(lease, _)| lease);
        // A job this process did not start (or whose lease it never created) is not its to
        // publish: generation 0 is never held.
        match fence::decide(held, now.as_ref()) {
            Fence::Current => Ok(()),
            Fence::Superseded {
                held,
                current,
                holder,
            } => Err(StoreError::Fenced {
                job: job.clone(),
                checkpoint,
                held,
                current,
                holder: holder.unwrap_or_else(|| "nobody".to_owned()),
            }),
        }
    }
}
