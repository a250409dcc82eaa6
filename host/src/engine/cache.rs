//! The compiled-module cache: one file per module and engine, `<sha256>-<engine>.cwasm`, and
//! beside it `<sha256>-<engine>.cwasm.hmac`, the HMAC-SHA-256 of the file's bytes under the
//! state folder's cache key, recorded when the host wrote the file.
//!
//! Loading a compiled module runs its native code outside the sandbox. A file whose record is
//! missing or does not match (planted, changed, or written under another key) is therefore
//! never loaded: the module is compiled again and, unless the cache is read-only, the file and
//! its record replaced. The bytes verified are the bytes loaded (read once, into memory), so a
//! file swapped after the check is not loaded either. The key, 32 random bytes in a file of
//! its own (owner-only), is made at the first write; a read-only engine never makes it.

use std::hash::{Hash, Hasher};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use wasmtime::component::Component;

/// The secret the records are keyed with.
type Key = [u8; 32];

/// The cache folder, and the key of its records once known.
pub(super) struct Cache {
    dir: PathBuf,
    key_file: PathBuf,
    /// Read when the cache is opened; made at the first write if there was none.
    key: Mutex<Option<Key>>,
}

impl Cache {
    /// The cache in `dir`, its records keyed with the key in `key_file` (read now, if any).
    pub(super) fn open(dir: &Path, key_file: &Path) -> Cache {
        let key = read_key(key_file).unwrap_or_else(|e| {
            tracing::warn!(path = %key_file.display(), "cannot use the cache key: {e}");
            None
        });
        Cache {
            dir: dir.to_owned(),
            key_file: key_file.to_owned(),
            key: Mutex::new(key),
        }
    }

    /// Where the module with content hash `sha256` compiled by `engine` is cached.
    pub(super) fn path(&self, engine: &wasmtime::Engine, sha256: &str) -> PathBuf {
        // XXH3, not `DefaultHasher`, whose output may change with the Rust release: the name
        // must stay the same for as long as the engine's compatibility does.
        let mut hasher = xxhash_rust::xxh3::Xxh3::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        self.dir
            .join(format!("{sha256}-{:016x}.cwasm", hasher.finish()))
    }

    /// The module cached at `path`, if it is there and its record vouches for its bytes.
    pub(super) fn load(&self, engine: &wasmtime::Engine, path: &Path) -> Option<Component> {
        let bytes = match self.verified(path) {
            Ok(bytes) => bytes?,
            Err(why) => {
                tracing::warn!(path = %path.display(), "not loading the cached module: {why}; compiling it again");
                return None;
            }
        };
        // SAFETY: these are the very bytes the host serialized from a component of this
        // engine configuration (the file name carries its compatibility hash), as their
        // record, keyed with the state folder's secret, vouches.
        #[allow(unsafe_code)]
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(component) => Some(component),
            Err(e) => {
                tracing::warn!(path = %path.display(), "ignoring unusable cached module: {e:#}");
                None
            }
        }
    }

    /// The bytes of the file at `path` (`None` if there is none), if its record matches.
    fn verified(&self, path: &Path) -> Result<Option<Vec<u8>>, String> {
        let bytes = match std::fs::read(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            read => read.map_err(|e| format!("cannot read it: {e}"))?,
        };
        let key = self
            .key
            .lock()
            .expect("not poisoned")
            .ok_or("no cache key to verify it with")?;
        let recorded = std::fs::read_to_string(record_path(path))
            .map_err(|e| format!("no record of it ({e})"))?;
        let recorded = hex::decode(recorded.trim()).unwrap_or_default();
        // Compared in a time that does not depend on where they differ.
        if hmac_sha256(&key, &bytes).verify_slice(&recorded).is_err() {
            return Err("its bytes are not those the host recorded".to_owned());
        }
        Ok(Some(bytes))
    }

    /// Writes `component` into the cache at `path`, with its record; a failure only costs a
    /// later compile.
    pub(super) fn write(&self, path: &Path, component: &Component) {
        let written = component
            .serialize()
            .map_err(|e| format!("{e:#}"))
            .and_then(|bytes| self.write_bytes(path, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), "cannot cache compiled module: {e}");
        }
    }

    fn write_bytes(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let key = self.key_or_make()?;
        // Each complete or absent: a file without its record is compiled again, never loaded.
        crate::durable::write_file(path, bytes)?;
        let record = hex::encode(hmac_sha256(&key, bytes).finalize().into_bytes());
        crate::durable::write_file(&record_path(path), record.as_bytes())
    }

    /// The key, made now if there is none yet.
    fn key_or_make(&self) -> io::Result<Key> {
        let mut key = self.key.lock().expect("not poisoned");
        if let Some(key) = *key {
            return Ok(key);
        }
        let made = make_key(&self.key_file)?;
        *key = Some(made);
        Ok(made)
    }
}

/// The record of the cached file at `path`.
fn record_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".hmac");
    path.with_file_name(name)
}

/// The key in `path`, if there is one.
fn read_key(path: &Path) -> io::Result<Option<Key>> {
    match std::fs::read(path) {
        Ok(bytes) => Key::try_from(bytes.as_slice()).map(Some).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "the cache key is not 32 bytes")
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Makes the key in `path`, owner-only, unless another process made one first: then that one.
fn make_key(path: &Path) -> io::Result<Key> {
    let dir = path.parent().expect("a file path has a parent");
    let key: Key = rand::random();
    // A temporary file is owner-only (0600); it becomes the key whole, or not at all.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(&key)?;
    tmp.as_file().sync_all()?;
    match tmp.persist_noclobber(path) {
        Ok(_) => {
            crate::durable::sync_dir(dir)?;
            Ok(key)
        }
        Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
            read_key(path)?.ok_or_else(|| io::Error::other("the cache key vanished"))
        }
        Err(e) => Err(e.error),
    }
}

/// The HMAC-SHA-256 (RFC 2104) of `bytes` under `key`, ready to finish or verify.
fn hmac_sha256(key: &[u8], bytes: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(bytes);
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_owner_only_and_read_back() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("cache.key");
        assert_eq!(read_key(&path).unwrap(), None);
        let key = make_key(&path).unwrap();
        assert_eq!(
            make_key(&path).unwrap(),
            key,
            "a second make keeps the first key"
        );
        assert_eq!(read_key(&path).unwrap(), Some(key));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_without_a_matching_record_is_not_verified() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = Cache::open(tmp.path(), &tmp.path().join("key"));
        let path = tmp.path().join("m.cwasm");
        assert_eq!(cache.verified(&path), Ok(None));
        cache.write_bytes(&path, b"compiled").unwrap();
        assert_eq!(cache.verified(&path), Ok(Some(b"compiled".to_vec())));
        std::fs::write(&path, b"planted").unwrap();
        assert!(cache.verified(&path).is_err());
        std::fs::write(&path, b"compiled").unwrap();
        std::fs::remove_file(record_path(&path)).unwrap();
        assert!(cache.verified(&path).is_err());
        // Under another key, the same bytes and record do not verify.
        cache.write_bytes(&path, b"compiled").unwrap();
        let other = Cache::open(tmp.path(), &tmp.path().join("other-key"));
        other.key_or_make().unwrap();
        assert!(other.verified(&path).is_err());
    }
}
