//! Durable writes: a file or a whole folder appears complete, or not at all.
//!
//! The recipe, each step commented with the crash it survives: write into a temporary name,
//! fsync the file, rename it into place, fsync the parent folder.
//!
//! Every step is also described as a [`Step`], which the crash-consistency test records
//! (in test builds only) and replays prefix by prefix, dropping what was not yet made durable,
//! as the ALICE study of crash consistency does.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// One file-system step of the recipes here, as the crash-consistency test replays it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// A folder (and its missing parents) created.
    CreateDir(PathBuf),
    /// A file created with these contents; durable only once synced.
    Write(PathBuf, Vec<u8>),
    /// A file's contents made durable.
    SyncFile(PathBuf),
    /// A file or folder renamed; durable only once the folder holding `to` is synced.
    Rename(PathBuf, PathBuf),
    /// A folder's entries (created, renamed, linked) made durable.
    SyncDir(PathBuf),
    /// A second name given to a file `from` (whose contents are durable already); durable only
    /// once the folder holding `to` is synced.
    Link(PathBuf, PathBuf),
}

#[cfg(test)]
thread_local! {
    static JOURNAL: std::cell::RefCell<Option<Vec<Step>>> = const { std::cell::RefCell::new(None) };
}

/// Records the steps this thread takes until [`recorded`] (test builds only).
#[cfg(test)]
pub fn record() {
    JOURNAL.set(Some(Vec::new()));
}

/// The steps recorded since [`record`], which stops recording.
#[cfg(test)]
pub fn recorded() -> Vec<Step> {
    JOURNAL.take().unwrap_or_default()
}

#[cfg(test)]
fn journal(step: impl FnOnce() -> Step) {
    JOURNAL.with_borrow_mut(|journal| journal.as_mut().map(|steps| steps.push(step())));
}

#[cfg(not(test))]
fn journal(_step: impl FnOnce() -> Step) {}

/// Creates a folder and its missing parents, owner-only (0700).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    journal(|| Step::CreateDir(dir.to_owned()));
    Ok(())
}

/// Writes `bytes` to `path` durably: a crash leaves either no file or the whole of it.
pub fn write_file(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().expect("a file path has a parent");
    // A crash while writing leaves only a temporary file, never a short `path`.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    journal(|| Step::Write(tmp.path().to_owned(), bytes.to_vec()));
    // Without fsync, a rename can reach the disk before the data: after a power loss `path`
    // would exist but be empty.
    tmp.as_file().sync_all()?;
    journal(|| Step::SyncFile(tmp.path().to_owned()));
    let tmp_path = tmp.path().to_owned();
    tmp.persist(path).map_err(|e| e.error)?;
    journal(|| Step::Rename(tmp_path, path.to_owned()));
    // The rename itself lives in the folder: fsync it so the new name survives a power loss.
    sync_dir(dir)
}

/// Writes a file that lives inside a folder still being built (its name does not matter until
/// the folder is renamed): write then fsync, so the later rename publishes complete data.
/// The file is `parts`, one after another, each written from where it lies (a state file's
/// operator state is not copied into one buffer first). `midway` runs when half of the bytes
/// are written (where a test injects a crash or a full disk, leaving a partial file behind).
pub fn write_file_in_building_dir(
    path: &Path,
    parts: &[&[u8]],
    midway: impl FnOnce() -> io::Result<()>,
) -> io::Result<()> {
    let mut file = File::create(path)?;
    let half = parts.iter().map(|part| part.len()).sum::<usize>() / 2;
    let mut midway = Some(midway);
    let mut written = 0;
    for part in parts {
        let (before, after) = part.split_at(half.saturating_sub(written).min(part.len()));
        file.write_all(before)?;
        written += before.len();
        if written == half {
            midway.take().map_or(Ok(()), |midway| midway())?;
        }
        file.write_all(after)?;
        written += after.len();
    }
    if let Some(midway) = midway {
        midway()?; // no parts: an empty file, half written
    }
    journal(|| Step::Write(path.to_owned(), parts.concat()));
    file.sync_all()?;
    journal(|| Step::SyncFile(path.to_owned()));
    Ok(())
}

/// Gives the durable file `from` a second name `to`, inside a folder still being built (which
/// publishing syncs): both names share the bytes, and the file lives while either does.
pub fn link_in_building_dir(from: &Path, to: &Path) -> io::Result<()> {
    fs::hard_link(from, to)?;
    journal(|| Step::Link(from.to_owned(), to.to_owned()));
    Ok(())
}

/// Publishes a fully written folder `from` as `to`, durably.
pub fn publish_dir(from: &Path, to: &Path) -> io::Result<()> {
    // The files inside were fsynced as they were written; fsync the folder so their names are
    // durable before the folder becomes visible under its final name.
    sync_dir(from)?;
    // The rename is atomic: readers see the whole folder under `to` or nothing.
    fs::rename(from, to)?;
    journal(|| Step::Rename(from.to_owned(), to.to_owned()));
    // Make the rename durable (it is an entry in the parent folder).
    sync_dir(to.parent().expect("a folder path has a parent"))
}

/// fsyncs a folder, making the names inside it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()?;
    journal(|| Step::SyncDir(dir.to_owned()));
    Ok(())
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
        write_file_in_building_dir(&building.join("a.state"), &[b"x"], || Ok(())).unwrap();
        publish_dir(&building, &dir.path().join("1")).unwrap();
        assert_eq!(fs::read(dir.path().join("1/a.state")).unwrap(), b"x");
        assert!(!building.exists());
    }

    #[test]
    fn a_file_of_parts_is_their_concatenation_and_midway_runs_at_half() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.state");
        let parts: [&[u8]; 3] = [b"ab", b"cdefgh", b"ij"];
        let seen = std::cell::Cell::new(None);
        let midway = || {
            seen.set(Some(fs::read(&path)?));
            Ok(())
        };
        write_file_in_building_dir(&path, &parts, midway).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"abcdefghij");
        assert_eq!(
            seen.take().as_deref(),
            Some(&b"abcde"[..]),
            "half written, then midway"
        );
        // A failure midway leaves the first half only.
        let error = write_file_in_building_dir(&path, &parts, || Err(io::Error::other("full")));
        assert_eq!(error.unwrap_err().to_string(), "full");
        assert_eq!(fs::read(&path).unwrap(), b"abcde");
    }
}
