//! The compiled-module cache the end-to-end tests share, so that each component is compiled
//! once per target dir rather than once per test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::util::{Dir, target_dir};

/// The compiled-module cache the tests of this target dir share: compiling a component takes
/// up to tens of seconds (a Python one: its interpreter is in it). A test's state folder starts
/// with what earlier tests compiled, and gives back what it compiled when it is dropped. Safe to
/// share: the host names each file by module and engine, and writes it whole, by rename; the
/// records that vouch for the files are keyed with one key, [`shared_key`], which every test's
/// state folder gets.
pub fn shared_cache() -> PathBuf {
    let dir = target_dir().join("e2e-module-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The key of the shared cache's records (the host's `cache.key`), made once per target dir.
pub fn shared_key() -> PathBuf {
    let key = target_dir().join("e2e-module-cache.key");
    if !key.exists() {
        // Whole or not at all: made under a name of its own, then linked in unless another
        // test made it first.
        let made = target_dir().join(format!(".e2e-module-cache.key.{}", std::process::id()));
        let bytes: Vec<u8> = (0..32u8).map(random_byte).collect();
        let mut file = std::fs::OpenOptions::new();
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        let mut file = file
            .write(true)
            .create(true)
            .truncate(true)
            .open(&made)
            .unwrap();
        std::io::Write::write_all(&mut file, &bytes).unwrap();
        let _ = std::fs::hard_link(&made, &key);
        let _ = std::fs::remove_file(&made);
    }
    key
}

/// A byte that differs from run to run (no cryptography needed: the tests' key guards
/// nothing).
fn random_byte(i: u8) -> u8 {
    use std::hash::BuildHasher as _;
    std::hash::RandomState::new().hash_one((i, SystemTime::now())) as u8
}

/// Gives the state folder `home` the shared key of the compiled-module cache's records, and
/// a cache holding what the shared cache holds.
pub fn share_into(home: &Path) {
    let cache = home.join("cache");
    share_key(home);
    owner_only_dir(&cache);
    share_files(&shared_cache(), &cache);
}

/// Gives the state folder `home` the shared key of the compiled-module cache's records.
pub fn share_key(home: &Path) {
    owner_only_dir(home);
    std::fs::copy(shared_key(), home.join("cache.key")).unwrap();
}

/// The compiled module of the component at `component` in the compiled-module cache folder
/// `cache`, if it holds one: the host names each after the component's SHA-256, then the
/// engine's compatibility hash.
pub fn cached_module(cache: &Path, component: &Path) -> Option<PathBuf> {
    let sha256 = hex::encode(Sha256::digest(std::fs::read(component).unwrap()));
    let mut entries = std::fs::read_dir(cache).ok()?;
    entries.find_map(|e| {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        (name.starts_with(&sha256) && name.ends_with(".cwasm")).then_some(path)
    })
}

/// Whether the compiled-module cache folder `cache` holds a module of the component at
/// `component`.
pub fn holds_module(cache: &Path, component: &Path) -> bool {
    cached_module(cache, component).is_some()
}

/// Asserts that the compiled-module cache of `dir`'s state folder holds a module of each of
/// `components`.
pub fn assert_compiled(dir: &Dir, components: &[PathBuf]) {
    let cache = dir.home().join("cache");
    for component in components {
        assert!(
            holds_module(&cache, component),
            "no compiled module of {} in {}",
            component.display(),
            cache.display()
        );
    }
}

/// Every file of the compiled-module cache of `dir`'s state folder, with its length and
/// modification time. The host writes each module it compiles at once, anew (by rename), so a
/// start that compiled nothing leaves these the same.
pub fn cache_files(dir: &Dir) -> BTreeMap<String, (u64, SystemTime)> {
    std::fs::read_dir(dir.home().join("cache"))
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let metadata = entry.metadata().unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                (metadata.len(), metadata.modified().unwrap()),
            )
        })
        .collect()
}

/// Puts every file of `from` that `to` lacks into `to`: a hard link, or a copy across file
/// systems.
pub fn share_files(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = to.join(&name);
        if name.ends_with(".hmac") || target.exists() || !entry.path().is_file() {
            continue;
        }
        // A module and its record go together, the record first: two tests that compiled one
        // module each made a pair of their own, and a module beside another's record would be
        // refused (wasmtime's output need not be the same bytes twice).
        let record = format!("{name}.hmac");
        if from.join(&record).is_file() {
            let _ = std::fs::remove_file(to.join(&record));
            share_file(&from.join(&record), &to.join(&record));
        }
        share_file(&entry.path(), &target);
    }
}

/// Puts file `from` at `to`: a hard link, or a copy across file systems.
fn share_file(from: &Path, to: &Path) {
    if std::fs::hard_link(from, to).is_err() {
        // Through a temporary name, so that another test never sees half a file.
        let dir = to.parent().expect("a file has a folder");
        let partial = dir.join(format!(".{}.partial", std::process::id()));
        if std::fs::copy(from, &partial).is_ok() {
            let _ = std::fs::rename(&partial, to);
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        share_files(&self.home().join("cache"), &shared_cache());
    }
}

/// Makes folder `dir` and its missing parents owner-only, as the host makes a state folder
/// (it changes the mode of none it finds).
pub fn owner_only_dir(dir: &Path) {
    std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
        .create(dir)
        .unwrap();
}
