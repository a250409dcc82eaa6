//! Durable writes: a file or a whole folder appears complete, or not at all.
//!
//! The recipe, each step commented with the crash it survives: write into a temporary name,
//! fsync the file, rename it into place, fsync the parent folder.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

/// Writes `bytes` to `path` durably: a crash leaves either no file or the whole of it.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a file path has a parent");
    // A crash while writing leaves only a temporary file, never a short `path`.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    // Without fsync, a rename can reach the disk before the data: after a power loss `path`
    // would exist but be empty.
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    // The rename itself lives in the folder: fsync it so the new name survives a power loss.
    sync_dir(dir)
}

/// Writes a file that lives inside a folder still being built (its name does not matter until
/// the folder is renamed): write then fsync, so the later rename publishes complete data.
pub fn write_file_in_building_dir(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Publishes a fully written folder `from` as `to`, durably.
pub fn publish_dir(from: &Path, to: &Path) -> io::Result<()> {
    // The files inside were fsynced as they were written; fsync the folder so their names are
    // durable before the folder becomes visible under its final name.
    sync_dir(from)?;
    // The rename is atomic: readers see the whole folder under `to` or nothing.
    fs::rename(from, to)?;
    // Make the rename durable (it is an entry in the parent folder).
    sync_dir(to.parent().expect("a folder path has a parent"))
}

/// fsyncs a folder, making the names inside it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_file_replaces_whole_contents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("status");
        write_file(&path, b"running").unwrap();
        write_file(&path, b"ok").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"ok");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }

    #[test]
    fn publish_dir_moves_a_folder_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let building = dir.path().join(".in-progress-1");
        fs::create_dir(&building).unwrap();
        write_file_in_building_dir(&building.join("a.state"), b"x").unwrap();
        publish_dir(&building, &dir.path().join("1")).unwrap();
        assert_eq!(fs::read(dir.path().join("1/a.state")).unwrap(), b"x");
        assert!(!building.exists());
    }
}
