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
/// share: the host names each file by module and engine, and writes it whole, by rename.
pub fn shared_cache() -> PathBuf {
    let dir = target_dir().join("e2e-module-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Whether the compiled-module cache folder `cache` holds a module of the component at
/// `component`: the host names each after the component's SHA-256, then the engine's
/// compatibility hash.
pub fn holds_module(cache: &Path, component: &Path) -> bool {
    let sha256 = hex::encode(Sha256::digest(std::fs::read(component).unwrap()));
    std::fs::read_dir(cache).is_ok_and(|mut entries| {
        entries.any(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            name.starts_with(&sha256) && name.ends_with(".cwasm")
        })
    })
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
        let target = to.join(entry.file_name());
        if target.exists() || !entry.path().is_file() {
            continue;
        }
        if std::fs::hard_link(entry.path(), &target).is_err() {
            // Through a temporary name, so that another test never sees half a file.
            let partial = to.join(format!(".{}.partial", std::process::id()));
            if std::fs::copy(entry.path(), &partial).is_ok() {
                let _ = std::fs::rename(&partial, &target);
            }
        }
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        share_files(&self.home().join("cache"), &shared_cache());
    }
}
