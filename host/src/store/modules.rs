//! The module store: every module a job runs, kept by content as `modules/<sha256>.wasm`.
//!
//! Before a record's journey starts: when a job is admitted, each of its modules is put here
//! (under the start lock, before the job's first checkpoint can name it), so that every point's
//! `_metadata`, which names modules by SHA-256, can always be run again: `host run --from POINT`
//! without a job file, an export, a rollback. Writes are content-addressed and idempotent: a
//! module goes to a temporary name, is fsynced, then renamed (on an object store: one
//! create-only put), so a crash never leaves a partial file under its final name. Every read
//! verifies the bytes against their name. Only `host gc` removes a module
//! ([`crate::points::gc`] decides which).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::layout::parse_module_file_name;
use super::{Store, StoreError, io_error};
use crate::ids::sha256_hex;

impl Store {
    /// Where module `sha256` lives in this store (on an object store: named by its path under
    /// the state folder, as points are).
    pub fn module_location(&self, sha256: &str) -> PathBuf {
        self.layout.module(sha256)
    }

    /// Puts `bytes`, whose SHA-256 is `sha256`, into the module store; returns whether it
    /// wrote them (false: they were there already). A file under that name whose bytes do not
    /// match it (damaged) is replaced.
    pub fn put_module(&self, sha256: &str, bytes: &[u8]) -> Result<bool, StoreError> {
        // Pair assertion: a module is only ever stored under its own hash.
        assert_eq!(
            sha256_hex(bytes),
            sha256,
            "module stored under its own hash"
        );
        self.points.put_module(sha256, bytes)
    }

    /// The bytes of module `sha256`, verified against its hash. `point` names the point that
    /// wants it, for the error.
    pub fn read_module(&self, sha256: &str, point: &str) -> Result<Vec<u8>, StoreError> {
        let shown = PathBuf::from(self.display(&self.layout.module(sha256)));
        let Some(bytes) = self.points.read_module(sha256)? else {
            return Err(StoreError::ModuleMissing(Box::new(ModuleFault {
                sha256: sha256.to_owned(),
                point: point.to_owned(),
                path: shown,
                actual: String::new(),
            })));
        };
        verify_module(sha256, bytes, &shown, point)
    }

    /// The SHA-256 of every module in the module store, sorted.
    pub fn module_hashes(&self) -> Result<Vec<String>, StoreError> {
        let names = self.points.module_names()?;
        let mut hashes: Vec<String> = names
            .iter()
            .filter_map(|name| parse_module_file_name(name))
            .map(str::to_owned)
            .collect();
        hashes.sort();
        Ok(hashes)
    }

    /// Deletes module `sha256` from the module store. Only [`crate::points::gc`] calls this, having
    /// decided that nothing refers to it.
    pub fn remove_module(&self, sha256: &str) -> Result<(), StoreError> {
        self.points.remove_module(sha256)
    }
}

/// A module a point names that cannot be run: missing, or its bytes not its hash.
#[derive(Debug)]
pub struct ModuleFault {
    /// The module's SHA-256, as the point names it.
    pub sha256: String,
    /// The point that names it.
    pub point: String,
    /// The file (or object) looked for or read.
    pub path: PathBuf,
    /// What its bytes hash to (empty: missing).
    pub actual: String,
}

/// The file at `path`, or `None` if there is none.
pub fn read_if_present(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// `bytes`, read from `path` as module `sha256` for `point`, if they hash to it.
pub fn verify_module(
    sha256: &str,
    bytes: Vec<u8>,
    path: &Path,
    point: &str,
) -> Result<Vec<u8>, StoreError> {
    let actual = sha256_hex(&bytes);
    if actual != sha256 {
        return Err(StoreError::ModuleCorrupt(Box::new(ModuleFault {
            sha256: sha256.to_owned(),
            point: point.to_owned(),
            path: path.to_owned(),
            actual,
        })));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let root = tempfile::tempdir().unwrap();
        let store = Store::open(root.path().join("home")).unwrap();
        (root, store)
    }

    #[test]
    fn a_module_is_stored_once_under_its_hash_and_reads_back_verified() {
        let (_root, store) = store();
        let bytes = b"\0asm not really".to_vec();
        let sha = sha256_hex(&bytes);
        assert!(store.put_module(&sha, &bytes).unwrap(), "first put writes");
        assert!(
            !store.put_module(&sha, &bytes).unwrap(),
            "second put is a no-op"
        );
        assert_eq!(store.read_module(&sha, "sp-x").unwrap(), bytes);
        assert_eq!(store.module_hashes().unwrap(), std::slice::from_ref(&sha));
        // Nothing but the module itself is left in the folder (no temporary file).
        let names: Vec<_> = fs::read_dir(store.layout().modules())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, [format!("{sha}.wasm")]);
    }

    #[test]
    fn a_changed_byte_is_refused_naming_the_module_and_the_point() {
        let (_root, store) = store();
        let bytes = b"module bytes".to_vec();
        let sha = sha256_hex(&bytes);
        store.put_module(&sha, &bytes).unwrap();
        let path = store.module_location(&sha);
        let mut tampered = bytes.clone();
        tampered[0] ^= 1;
        fs::write(&path, &tampered).unwrap();
        let error = store.read_module(&sha, "sp-job-a-3-abcd").unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, StoreError::ModuleCorrupt { .. })
                && text.contains(&sha)
                && text.contains("sp-job-a-3-abcd")
                && text.contains(&path.display().to_string()),
            "{text}"
        );
        // Putting the right bytes again repairs it.
        assert!(store.put_module(&sha, &bytes).unwrap());
        assert_eq!(store.read_module(&sha, "sp").unwrap(), bytes);
    }

    #[test]
    fn a_missing_module_is_named() {
        let (_root, store) = store();
        let sha = "ab".repeat(32);
        let error = store.read_module(&sha, "job-a:3").unwrap_err();
        assert!(matches!(error, StoreError::ModuleMissing { .. }), "{error}");
        assert!(error.to_string().contains(&sha) && error.to_string().contains("job-a:3"));
    }

    #[test]
    fn removing_leaves_the_others() {
        let (_root, store) = store();
        let (a, b) = (b"a".to_vec(), b"b".to_vec());
        let (sha_a, sha_b) = (sha256_hex(&a), sha256_hex(&b));
        store.put_module(&sha_a, &a).unwrap();
        store.put_module(&sha_b, &b).unwrap();
        fs::write(store.layout().modules().join("notes.txt"), "x").unwrap();
        store.remove_module(&sha_a).unwrap();
        assert_eq!(store.module_hashes().unwrap(), [sha_b]);
    }

    #[test]
    fn only_hash_named_wasm_files_are_modules() {
        let sha = "0f".repeat(32);
        assert_eq!(
            parse_module_file_name(&format!("{sha}.wasm")),
            Some(&sha[..])
        );
        assert_eq!(
            parse_module_file_name(&format!("{}.wasm", "0F".repeat(32))),
            None
        );
        assert_eq!(parse_module_file_name("ab.wasm"), None);
        assert_eq!(parse_module_file_name(&format!("{sha}.tmp")), None);
    }
}
