//! One object's bytes moved: a state object's upload (one put, or a multipart upload above the
//! threshold, aborted if any part of it fails), and a download refused unread past a size.

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};

use super::{MULTIPART_PART_BYTES, MULTIPART_PARTS_PARALLEL_MAX, ObjectPoints, object_error};
use crate::store::StoreError;

impl ObjectPoints {
    /// The object at `location`, whole, refused unread if it is larger than `max` bytes.
    pub(super) fn read_object_at_most(
        &self,
        location: &Path,
        max: u64,
    ) -> Result<Bytes, StoreError> {
        let key = self.key_of(location);
        let (store, url) = (self.store.clone(), self.url_of(&key));
        let read = self.run(async move {
            let got = store.get(&key).await?;
            match got.meta.size > max {
                true => Ok(Err(got.meta.size)),
                false => Ok(Ok(got.bytes().await?)),
            }
        });
        match read.map_err(object_error(url.clone()))? {
            Ok(bytes) => Ok(bytes),
            Err(size) => Err(StoreError::Io {
                path: PathBuf::from(url),
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{size} bytes: larger than any segment ({max} bytes at most)"),
                ),
            }),
        }
    }

    /// Writes one state object. A blob above [`super::MULTIPART_THRESHOLD_BYTES`] (unless a test set
    /// another) goes up in parts;
    /// `midway` runs halfway (where a test crashes or fails the write). A single put sends
    /// `blob` as it lies; the parts of a multipart upload are copied into its buffers.
    pub(super) fn put_state(
        &self,
        location: &Path,
        blob: Bytes,
        midway: impl FnOnce() -> io::Result<()>,
    ) -> Result<(), StoreError> {
        let key = self.key_of(location);
        let url = self.url_of(&key);
        let midway_failed = |source| StoreError::Io {
            path: PathBuf::from(url.clone()),
            source,
        };
        if blob.len() <= self.multipart_threshold {
            // A crash here leaves this subtask's object absent: a single put is atomic.
            midway().map_err(midway_failed)?;
            let store = self.store.clone();
            return self
                .run(async move { store.put(&key, PutPayload::from(blob)).await })
                .map(drop)
                .map_err(object_error(url));
        }
        let half = blob.len() / 2;
        let (store, first) = (self.store.clone(), blob.slice(..half));
        let upload_key = key.clone();
        let upload = self
            .run(async move {
                let upload = store.put_multipart(&upload_key).await?;
                let upload = WriteMultipart::new_with_chunk_size(upload, MULTIPART_PART_BYTES);
                write_parts(upload, &first).await
            })
            .map_err(object_error(url.clone()))?;
        // A crash here leaves an unfinished upload: no object, parts the bucket's lifecycle
        // rule for incomplete uploads removes.
        if let Err(e) = midway() {
            let _ = self.run(async move { upload.abort().await });
            return Err(midway_failed(e));
        }
        let rest = blob.slice(half..);
        self.run(async move {
            // (A failure of `finish` aborts the upload itself.)
            write_parts(upload, &rest).await?.finish().await
        })
        .map(drop)
        .map_err(object_error(url))
    }
}

/// Writes `bytes` into `upload` a part at a time, at most [`MULTIPART_PARTS_PARALLEL_MAX`]
/// parts in flight. On a failure the upload is aborted, so that none of its parts linger in
/// the bucket, and the failure returned.
async fn write_parts(
    mut upload: WriteMultipart,
    bytes: &Bytes,
) -> object_store::Result<WriteMultipart> {
    for chunk in bytes.chunks(MULTIPART_PART_BYTES) {
        if let Err(e) = upload.wait_for_capacity(MULTIPART_PARTS_PARALLEL_MAX).await {
            let _ = upload.abort().await;
            return Err(e);
        }
        upload.write(chunk);
    }
    Ok(upload)
}
