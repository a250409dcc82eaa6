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
    /// A folder created (its parent exists); durable only once its parent is synced.
    CreateDir(PathBuf),
    /// A folder removed with all it held; durable only once its parent is synced.
    Remove(PathBuf),
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

/// How many steps were recorded since [`record`] (test builds only).
#[cfg(test)]
pub fn journal_len() -> usize {
    JOURNAL.with_borrow(|journal| journal.as_ref().map_or(0, Vec::len))
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

/// Creates a folder and its missing parents, owner-only (0700), durably: a new folder's
/// name lives in its parent, so each parent that gained one is fsynced (a file written into
/// the folder later syncs the folder itself, not the chain of folders above it).
pub fn create_dir(dir: &Path) -> io::Result<()> {
    // The folders missing, innermost first.
    let missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .map(Path::to_owned)
        .collect();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for made in missing.iter().rev() {
        journal(|| Step::CreateDir(made.clone()));
    }
    for made in &missing {
        sync_dir(made.parent().expect("a folder made has a parent"))?;
    }
    Ok(())
}

/// Removes a folder and everything in it, durably: its parent is fsynced, so that it does not
/// come back after a power loss.
pub fn remove_dir(dir: &Path) -> io::Result<()> {
    fs::remove_dir_all(dir)?;
    journal(|| Step::Remove(dir.to_owned()));
    sync_dir(dir.parent().expect("a folder removed has a parent"))
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
    let file = File::create(path)?;
    let half = parts.iter().map(|part| part.len()).sum::<usize>() / 2;
    let (before, after) = split_parts(parts, half);
    let mut writer = WriteBack::new(&file);
    writer.write(&before)?;
    midway()?;
    writer.write(&after)?;
    journal(|| Step::Write(path.to_owned(), parts.concat()));
    file.sync_all()?;
    journal(|| Step::SyncFile(path.to_owned()));
    Ok(())
}

/// `parts` cut at byte `at`: the pieces before it and those after, none empty.
fn split_parts<'p>(parts: &[&'p [u8]], at: usize) -> (Vec<&'p [u8]>, Vec<&'p [u8]>) {
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut start = 0;
    for part in parts {
        let (head, tail) = part.split_at(at.saturating_sub(start).min(part.len()));
        before.extend((!head.is_empty()).then_some(head));
        after.extend((!tail.is_empty()).then_some(tail));
        start += part.len();
    }
    (before, after)
}

/// Bytes written between two starts of write-back (see [`WriteBack`]).
const WRITE_BACK_BYTES: usize = 8 << 20;

/// Writes a file a piece of at most [`WRITE_BACK_BYTES`] at a time, the small pieces together
/// (one `writev`), and after each piece asks the kernel to start writing it to the disk
/// (`sync_file_range`, Linux), as RocksDB's `bytes_per_sync` does: the disk works while the
/// rest is copied into the page cache, and the `fsync` at the end has little left to wait for.
/// Only a start: durability is still the `fsync`'s.
struct WriteBack<'f> {
    file: &'f File,
    /// Bytes written.
    written: usize,
    /// Bytes whose write-back has been started.
    started: usize,
}

impl<'f> WriteBack<'f> {
    fn new(file: &'f File) -> Self {
        Self {
            file,
            written: 0,
            started: 0,
        }
    }

    /// Appends `parts`, one after another.
    fn write(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let mut piece: Vec<io::IoSlice<'_>> = Vec::new();
        let mut piece_len = 0;
        for part in parts.iter().flat_map(|part| part.chunks(WRITE_BACK_BYTES)) {
            if piece_len + part.len() > WRITE_BACK_BYTES {
                self.write_piece(&mut piece)?;
                piece_len = 0;
            }
            piece.push(io::IoSlice::new(part));
            piece_len += part.len();
        }
        self.write_piece(&mut piece)
    }

    /// Writes `piece` whole, empties it, and starts its write-back.
    fn write_piece(&mut self, piece: &mut Vec<io::IoSlice<'_>>) -> io::Result<()> {
        let mut slices = &mut piece[..];
        while !slices.is_empty() {
            match (&mut &*self.file).write_vectored(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written += n;
                    io::IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        piece.clear();
        start_write_back(self.file, self.started, self.written - self.started);
        self.started = self.written;
        Ok(())
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to the disk, without
/// waiting. A hint: where it fails (a file system without it), the `fsync` does it all.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn start_write_back(file: &File, offset: usize, len: usize) {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return;
    }
    // SAFETY: `sync_file_range` reads no memory of ours; the descriptor is open for the
    // borrow of `file`.
    let _ = unsafe {
        libc::sync_file_range(
            file.as_raw_fd(),
            offset as libc::off64_t,
            len as libc::off64_t,
            libc::SYNC_FILE_RANGE_WRITE,
        )
    };
}

#[cfg(not(target_os = "linux"))]
fn start_write_back(_file: &File, _offset: usize, _len: usize) {}

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

    #[test]
    fn parts_split_at_a_byte_into_non_empty_pieces() {
        let parts: [&[u8]; 4] = [b"ab", b"", b"cdef", b"g"];
        let (before, after) = split_parts(&parts, 3);
        assert_eq!(before, [&b"ab"[..], b"c"]);
        assert_eq!(after, [&b"def"[..], b"g"]);
        let (before, after) = split_parts(&parts, 2);
        assert_eq!(
            (before, after),
            (vec![&b"ab"[..]], vec![&b"cdef"[..], b"g"])
        );
        assert_eq!(split_parts(&parts, 0).0, Vec::<&[u8]>::new());
    }

    /// A file of several write-back pieces: a part longer than one, small parts around it
    /// (written together), and a part ending exactly on a piece's end.
    #[test]
    fn a_file_longer_than_a_write_back_piece_is_written_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.state");
        let long: Vec<u8> = (0..2 * WRITE_BACK_BYTES + 12_345)
            .map(|i| (i % 251) as u8)
            .collect();
        let exact = vec![7u8; WRITE_BACK_BYTES];
        let parts: [&[u8]; 5] = [b"head", &long, b"mid", &exact, b"tail"];
        let seen = std::cell::Cell::new(0);
        let midway = || {
            seen.set(fs::metadata(&path)?.len());
            Ok(())
        };
        write_file_in_building_dir(&path, &parts, midway).unwrap();
        assert_eq!(fs::read(&path).unwrap(), parts.concat());
        let total = parts.iter().map(|p| p.len()).sum::<usize>();
        assert_eq!(seen.get(), (total / 2) as u64, "midway at exactly half");
    }

    #[test]
    fn the_writer_counts_every_byte_and_starts_write_back_up_to_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        let mut writer = WriteBack::new(&file);
        let long = vec![1u8; WRITE_BACK_BYTES + 1];
        writer.write(&[b"x", &long, b"yz"]).unwrap();
        assert_eq!(
            (writer.written, writer.started),
            (long.len() + 3, long.len() + 3)
        );
        assert_eq!(file.metadata().unwrap().len(), long.len() as u64 + 3);
    }
}
