//! The object-store back-end of points and modules ([`super::backend::PointStore`],
//! implemented in [`backend`]): checkpoints, savepoints and the module store on S3-compatible
//! storage (`--store s3://bucket/prefix`), through the `object_store` crate.
//!
//! Where a barrier's journey ends when the points live on an object store: the keys are the
//! paths of [`Layout`] relative to the state folder, under the store's prefix
//! (`<prefix>/jobs/<job-id>/checkpoints/<n>/_metadata`, `<prefix>/savepoints/<id>/…`); a
//! point is still *named* by its path under the local state folder, which [`Layout::relative`]
//! maps to its key. Everything else (status, locks, sockets, the module cache) stays local.
//!
//! Completion is atomic as on disk, by another means: an object appears whole or not at all,
//! and a point exists exactly when its `_metadata` object does. State objects go first, straight
//! under the checkpoint's prefix; `_metadata` goes last, with a create-only put (`If-None-Match:
//! *`); listings only look for `_metadata`, so a point whose upload was cut short is never
//! listed. A savepoint's state objects are copied to its own prefix before its `_metadata`, so
//! that it is self-contained. Deleting a point deletes `_metadata` first. Before and after each
//! `_metadata` put the process checks the job's lease ([`super::fence`]).
//!
//! The store's methods stay synchronous. Each call here runs its future on a small runtime of
//! this back-end's own, and the calling thread waits for it with a plain executor: callers are
//! blocking threads, the command line (no runtime at all) and, for short calls, async tasks of
//! the job's runtime, where `Handle::block_on` would panic and where waiting on the job's own
//! runtime could starve it. The HTTP connections live on that one runtime, so they are reused
//! from call to call.

mod backend;
mod lease;
mod transfer;
mod url;

pub use url::{StoreUrl, StoreUrlError};

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

use super::backend::PointStore;
use super::layout::METADATA_FILE;
use super::{Layout, StoreError};
use crate::ids::{CheckpointId, JobId};

/// State blobs larger than this go up as multipart uploads.
pub const MULTIPART_THRESHOLD_BYTES: usize = 16 << 20;
/// Size of each part of a multipart upload (S3 wants 5 MiB at least, but the last).
pub const MULTIPART_PART_BYTES: usize = 8 << 20;
/// Parts of one multipart upload in flight at once.
const MULTIPART_PARTS_PARALLEL_MAX: usize = 4;
/// State objects read at once on restore.
pub const STATE_READS_PARALLEL_MAX: usize = 8;
/// Objects copied or deleted at once.
const REQUESTS_PARALLEL_MAX: usize = 8;
/// Attempts at a takeover when other processes keep changing the lease meanwhile.
const LEASE_RACES_MAX: u32 = 8;
/// Worker threads of this back-end's runtime.
const WORKER_THREADS: usize = 2;

/// Makes `ring` the cryptography of rustls (TLS) for the process: the host builds reqwest's
/// rustls without a provider of its own (see `host/Cargo.toml`), so this must run before an S3
/// client is built. Idempotent.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, and that one serves.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Points on an object store, and the leases this process holds there.
pub struct ObjectPoints {
    store: Arc<dyn ObjectStore>,
    url: StoreUrl,
    /// The state folder whose points these are: a point is named by its path there.
    layout: Layout,
    prefix: Key,
    /// `Some` until dropped: shut down in the background, since the last clone of the store
    /// may be dropped on an async task, where a blocking shutdown would panic.
    runtime: Option<tokio::runtime::Runtime>,
    /// The generation of each job's lease this process holds.
    held: Mutex<BTreeMap<JobId, u64>>,
    /// State objects above this many bytes go up as multipart uploads.
    multipart_threshold: usize,
}

/// Where [`ObjectPoints::put_metadata`] is around its `_metadata` put.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PutStep {
    /// Fenced once, about to put.
    Before,
    /// Put, not yet fenced again.
    After,
}

impl Drop for ObjectPoints {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for ObjectPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ObjectPoints({})", self.url)
    }
}

/// A key's failure, named by its URL.
fn object_error(url: String) -> impl FnOnce(object_store::Error) -> StoreError {
    move |source| StoreError::Object {
        key: url,
        source: Box::new(source),
    }
}

fn not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl ObjectPoints {
    /// The points of the state folder `layout` lays out, at `url` in `store` (built by the
    /// caller, with its credentials and endpoint).
    pub fn new(
        store: Arc<dyn ObjectStore>,
        url: StoreUrl,
        layout: Layout,
    ) -> io::Result<ObjectPoints> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("object-store")
            .enable_all()
            .build()?;
        let prefix = Key::from(url.prefix.as_str());
        Ok(ObjectPoints {
            store,
            url,
            layout,
            prefix,
            runtime: Some(runtime),
            held: Mutex::new(BTreeMap::new()),
            multipart_threshold: MULTIPART_THRESHOLD_BYTES,
        })
    }

    /// Points in a bucket of this process's memory (`object_store`'s own `InMemory`, with the
    /// create-only and conditional puts S3 has): the object protocol, leases and fence
    /// included, run without a server, for unit tests of the store's decisions. Each call
    /// makes a new bucket; [`ObjectPoints::sharing`] gives another process's view of one.
    #[cfg(test)]
    pub fn in_memory(layout: Layout) -> ObjectPoints {
        let bucket = Arc::new(object_store::memory::InMemory::new());
        let url = StoreUrl::parse("s3://memory/points").expect("a valid URL");
        ObjectPoints::new(bucket, url, layout).expect("a runtime starts")
    }

    /// Another process's view of the same bucket, from the state folder `layout` lays out:
    /// the same objects, none of this one's leases.
    #[cfg(test)]
    pub fn sharing(&self, layout: Layout) -> ObjectPoints {
        let url = self.url.clone();
        ObjectPoints::new(self.store.clone(), url, layout).expect("a runtime starts")
    }

    /// Puts `bytes` at `location` as anyone who can write the bucket could: no fence, no
    /// lease, whatever is there replaced (tests plant points with it).
    #[cfg(test)]
    pub fn plant(&self, location: &Path, bytes: Vec<u8>) {
        let (store, key) = (self.store.clone(), self.key_of(location));
        let put = self.run(async move { store.put(&key, Bytes::from(bytes).into()).await });
        put.expect("planted");
    }

    /// These points, with state objects above `bytes` sent as multipart uploads (tests: a
    /// crash can then land in the middle of one).
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn with_multipart_threshold(mut self, bytes: usize) -> ObjectPoints {
        self.multipart_threshold = bytes;
        self
    }

    /// The store's URL.
    fn url(&self) -> &StoreUrl {
        &self.url
    }

    /// Runs `future` on this back-end's runtime and waits for it on the calling thread.
    fn run<T: Send + 'static>(&self, future: impl Future<Output = T> + Send + 'static) -> T {
        let runtime = self.runtime.as_ref().expect("running until dropped");
        let task = runtime.spawn(future);
        futures::executor::block_on(task).expect("object store calls do not panic")
    }

    /// The key of a location under the state folder (`None`: it is not under it).
    fn key(&self, location: &Path) -> Option<Key> {
        let relative = self.layout.relative(location)?;
        let mut key = self.prefix.clone();
        for part in relative.iter() {
            key = key.join(part.to_str()?);
        }
        Some(key)
    }

    fn key_of(&self, location: &Path) -> Key {
        self.key(location)
            .unwrap_or_else(|| panic!("{} is not in the state folder", location.display()))
    }

    /// The URL of a key, for messages.
    fn url_of(&self, key: &Key) -> String {
        format!("s3://{}/{key}", self.url.bucket)
    }

    /// Every object under `prefix`, with its size.
    fn list(&self, prefix: Key) -> Result<Vec<(Key, u64)>, StoreError> {
        let (store, url) = (self.store.clone(), self.url_of(&prefix));
        self.run(async move {
            store
                .list(Some(&prefix))
                .map_ok(|meta| (meta.location, meta.size))
                .try_collect()
                .await
        })
        .map_err(object_error(url))
    }

    /// The names just below `prefix` whose `<name>/_metadata` exists and is not empty: its
    /// published points.
    fn published_below(&self, prefix: Key) -> Result<Vec<String>, StoreError> {
        let mut names = Vec::new();
        for (key, size) in self.list(prefix.clone())? {
            let parts: Vec<_> = key.prefix_match(&prefix).into_iter().flatten().collect();
            // An empty `_metadata` marks a point abandoned by a takeover, never published.
            if let [name, file] = &parts[..]
                && file.as_ref() == METADATA_FILE
                && size > 0
            {
                names.push(name.as_ref().to_owned());
            }
        }
        Ok(names)
    }

    /// Deletes these objects, `_metadata` first: a point is never listed without its states.
    fn delete_all(&self, mut keys: Vec<Key>) -> Result<(), StoreError> {
        keys.sort_by_key(|key| key.filename() != Some(METADATA_FILE));
        let metadata_first = keys
            .first()
            .filter(|key| key.filename() == Some(METADATA_FILE))
            .cloned();
        if let Some(key) = metadata_first {
            let (store, url) = (self.store.clone(), self.url_of(&key));
            self.run(async move { store.delete(&key).await })
                .or_else(|e| if not_found(&e) { Ok(()) } else { Err(e) })
                .map_err(object_error(url))?;
            keys.remove(0);
        }
        let (store, url) = (self.store.clone(), self.url_of(&self.prefix));
        self.run(async move {
            futures::stream::iter(keys)
                .map(|key| {
                    let store = store.clone();
                    async move {
                        match store.delete(&key).await {
                            Err(e) if !not_found(&e) => Err(e),
                            _ => Ok(()),
                        }
                    }
                })
                .buffer_unordered(REQUESTS_PARALLEL_MAX)
                .try_collect::<()>()
                .await
        })
        .map_err(object_error(url))
    }

    /// Copies the state objects named in `files` from one point's prefix to another's.
    fn copy_states(&self, from: &Path, to: &Path, files: Vec<String>) -> Result<(), StoreError> {
        let (from, to) = (self.key_of(from), self.key_of(to));
        let (store, url) = (self.store.clone(), self.url_of(&to));
        self.run(async move {
            futures::stream::iter(files)
                .map(|file| {
                    let store = store.clone();
                    let (from, to) = (
                        from.clone().join(file.as_str()),
                        to.clone().join(file.as_str()),
                    );
                    async move { store.copy(&from, &to).await }
                })
                .buffer_unordered(REQUESTS_PARALLEL_MAX)
                .try_collect::<()>()
                .await
        })
        .map_err(object_error(url))
    }

    /// Publishes the point at `location`: its `_metadata`, create-only, fenced before and
    /// after. `around_put` runs right before the put and right after it, before the second
    /// check (where a test crashes or stalls), told which.
    fn put_metadata(
        &self,
        location: &Path,
        job: &JobId,
        checkpoint: CheckpointId,
        bytes: Vec<u8>,
        around_put: impl Fn(PutStep) -> io::Result<()>,
    ) -> Result<(), StoreError> {
        let key = self.key_of(location).join(METADATA_FILE);
        let url = self.url_of(&key);
        // A zombie whose job was taken over stops here.
        self.check_fence(job, checkpoint)?;
        let failed = |source| StoreError::Io {
            path: PathBuf::from(url.clone()),
            source,
        };
        around_put(PutStep::Before).map_err(failed)?;
        let store = self.store.clone();
        // The put that publishes: `If-None-Match: *`, so a point is never written twice.
        let put = self.run(async move {
            let options = PutOptions::from(PutMode::Create);
            store
                .put_opts(&key, Bytes::from(bytes).into(), options)
                .await
        });
        if let Err(e) = put {
            // Taken over between the check and the put: the successor abandoned this
            // checkpoint first ([`ObjectPoints::abandon_unpublished`]).
            if matches!(e, object_store::Error::AlreadyExists { .. }) {
                self.check_fence(job, checkpoint)?;
            }
            return Err(object_error(url.clone())(e));
        }
        around_put(PutStep::After).map_err(failed)?;
        // Taken over during the put: the point exists, but not for this process to commit.
        self.check_fence(job, checkpoint)
    }

    /// A job's checkpoints with objects but no `_metadata`: never published.
    fn leftovers(&self, job: &JobId) -> Result<Vec<CheckpointId>, StoreError> {
        let prefix = self.key_of(&self.layout.checkpoints(job));
        let mut seen = std::collections::BTreeSet::new();
        let mut published = std::collections::BTreeSet::new();
        for (key, _) in self.list(prefix.clone())? {
            let parts: Vec<_> = key.prefix_match(&prefix).into_iter().flatten().collect();
            let Some(n) = parts
                .first()
                .and_then(|n| Layout::parse_checkpoint_name(n.as_ref()))
            else {
                continue;
            };
            seen.insert(n);
            if parts.len() == 2 && parts[1].as_ref() == METADATA_FILE {
                published.insert(n);
            }
        }
        Ok(seen.difference(&published).copied().collect())
    }

    /// Writes the object at `location` unless one is there already (`If-None-Match: *`);
    /// returns whether it wrote it. For content-addressed objects (modules), whose bytes under
    /// one name never differ.
    fn put_if_absent(&self, location: &Path, bytes: Bytes) -> Result<bool, StoreError> {
        let key = self.key_of(location);
        let (store, url) = (self.store.clone(), self.url_of(&key));
        let options = PutOptions::from(PutMode::Create);
        match self.run(async move { store.put_opts(&key, bytes.into(), options).await }) {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(object_error(url)(e)),
        }
    }

    /// Deletes the one object at `location` (absent already is fine).
    fn remove_object(&self, location: &Path) -> Result<(), StoreError> {
        self.delete_all(vec![self.key_of(location)])
    }

    /// Makes the unpublished point at `location` (one a crashed or fenced process left) never
    /// publishable, then deletes what it left: an empty `_metadata` goes in first, create-only,
    /// so that the old process's own `_metadata` put, if it is still on its way (past its first
    /// fence check), fails rather than publishes a point whose states are gone. If that put won
    /// the race, the point is published, whole, and stays.
    fn abandon_unpublished(&self, location: &Path) -> Result<(), StoreError> {
        let tombstone = location.join(METADATA_FILE);
        if !self.put_if_absent(&tombstone, Bytes::new())? {
            return Ok(());
        }
        let metadata = self.key_of(&tombstone);
        let keys = self.list(self.key_of(location))?;
        let states = keys.into_iter().map(|(key, _)| key);
        self.delete_all(states.filter(|key| *key != metadata).collect())
    }

    /// Deletes what an unpublished point left at `location`; a published one stays (it may be
    /// what a successor resumes from).
    fn remove_unpublished(&self, location: &Path) -> Result<(), StoreError> {
        // Published, or abandoned by a successor (which removed the rest, and whose empty
        // `_metadata` must stay to keep it unpublishable).
        let key = self.key_of(location).join(METADATA_FILE);
        let (store, url) = (self.store.clone(), self.url_of(&key));
        match self.run(async move { store.head(&key).await }) {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => self.remove_point(location),
            Err(e) => Err(object_error(url)(e)),
        }
    }

    /// The whole object at `location` (a segment).
    fn read_object(&self, location: &Path) -> Result<Bytes, StoreError> {
        let key = self.key_of(location);
        let (store, url) = (self.store.clone(), self.url_of(&key));
        self.run(async move { store.get(&key).await?.bytes().await })
            .map_err(object_error(url))
    }

    /// Copies the object at `from`, of an earlier point, to `to`, server-side; false if there
    /// is none (the point was removed, or the object's checkpoint aborted).
    fn copy_if_present(&self, from: &Path, to: &Path) -> Result<bool, StoreError> {
        let (from, to) = (self.key_of(from), self.key_of(to));
        let (store, url) = (self.store.clone(), self.url_of(&to));
        match self.run(async move { store.copy(&from, &to).await }) {
            Ok(()) => Ok(true),
            Err(e) if not_found(&e) => Ok(false),
            Err(e) => Err(object_error(url)(e)),
        }
    }

    /// The names of the objects right under `location` (a point's files).
    fn names(&self, location: &Path) -> Result<Vec<String>, StoreError> {
        let prefix = self.key_of(location);
        let names = self
            .list(prefix.clone())?
            .into_iter()
            .filter_map(|(key, _)| {
                let parts: Vec<_> = key.prefix_match(&prefix)?.collect();
                match &parts[..] {
                    [name] => Some(name.as_ref().to_owned()),
                    _ => None,
                }
            });
        Ok(names.collect())
    }
}
