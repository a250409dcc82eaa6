//! A sink that writes each record's value, plus a newline, into part files, with two-phase
//! commit.
//!
//! Config: `dir`, the guest path of an output directory the host preopens read-write, shared by
//! all subtasks. Subtask `s` appends what it is given to `<dir>/.staging/<s>.current`;
//! `prepare-commit` makes that file durable and renames it to `.staging/<s>-<checkpoint>.pending`,
//! and `commit` renames the pending files of completed checkpoints to
//! `<dir>/part-<checkpoint, 12 digits>-<s>.txt`, where they become visible. Its state is the
//! checkpoint and the ids of its pending files. `restore` only loads it; `recover`, once the job
//! starts, publishes the restored checkpoint's pending files and removes the files written after
//! that checkpoint, since the resumed job writes them again.
//!
//! It rescales (`union`): after a parallelism change, new subtask `s` of `p` reconciles the
//! files of every old subtask `i` with `i % p == s` (each old subtask's by exactly one new
//! subtask, and its own index's by itself, before it writes under it), then writes as `s`.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use jobhost_guest::{
    Context, ModuleInfo, Records, Rescale, Restore, config_value, decode_state_exact, encode_state,
};
use serde::{Deserialize, Serialize};

const STATE_VERSION: u32 = 1;

/// State version 1.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// The checkpoint the state was written for.
    checkpoint: u64,
    /// The checkpoints whose pending files await `commit`, in increasing order.
    pending: Vec<u64>,
}

fn part_name(id: u64, subtask: u32) -> String {
    format!("part-{id:012}-{subtask}.txt")
}

fn pending_name(subtask: u32, id: u64) -> String {
    format!("{subtask}-{id}.pending")
}

/// The checkpoint id of `name` if it is exactly `part_name(id, subtask)`.
fn part_id(name: &str, subtask: u32) -> Option<u64> {
    let id = name
        .strip_prefix("part-")?
        .split_once('-')?
        .0
        .parse()
        .ok()?;
    (name == part_name(id, subtask)).then_some(id)
}

/// The checkpoint id of `name` if it is exactly `pending_name(subtask, id)`.
fn pending_id(name: &str, subtask: u32) -> Option<u64> {
    let id = name
        .strip_suffix(".pending")?
        .split_once('-')?
        .1
        .parse()
        .ok()?;
    (name == pending_name(subtask, id)).then_some(id)
}

/// Describes a failed file system operation.
fn failed(action: &str, path: &Path) -> impl FnOnce(io::Error) -> String {
    move |e| format!("cannot {action} `{}`: {e}", path.display())
}

/// Times a listing is tried again after an entry vanished under it.
const LIST_ATTEMPTS_MAX: u32 = 100;

/// The names of the files in `dir`, none if it does not exist. Other subtasks of the sink
/// rename and remove their own files in the same folder meanwhile, and WASI's `readdir` looks
/// each entry up as it lists it, so an entry that vanished fails the listing: it is listed
/// again (skipping the rest could leave a stale file behind).
fn file_names(dir: &Path) -> Result<Vec<String>, String> {
    let mut attempts = 1;
    loop {
        match list_once(dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && attempts < LIST_ATTEMPTS_MAX => {
                attempts += 1
            }
            result => return result.map_err(failed("list", dir)),
        }
    }
}

fn list_once(dir: &Path) -> io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound && !dir.exists() => return Ok(Vec::new()),
        entries => entries?,
    };
    let mut names = Vec::new();
    for entry in entries {
        names.extend(entry?.file_name().into_string().ok());
    }
    Ok(names)
}

fn remove(path: &Path) -> Result<(), String> {
    match fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        result => result.map_err(failed("remove", path)),
    }
}

/// The file sink of one subtask.
pub struct FileSink {
    dir: PathBuf,
    staging: PathBuf,
    subtask: u32,
    parallelism: u32,
    /// The transaction being written, once something has been written since the last
    /// `init`, `recover` or `prepare-commit`.
    current: Option<BufWriter<File>>,
    /// The checkpoints whose pending files await `commit`, in increasing order.
    pending: Vec<u64>,
    /// Restored: the old subtasks whose files `recover` reconciles, with their pending lists.
    restored: Vec<(u32, Vec<u64>)>,
}

impl FileSink {
    fn current_path(&self, subtask: u32) -> PathBuf {
        self.staging.join(format!("{subtask}.current"))
    }

    /// Creates, or truncates, the current transaction's file.
    fn create_current(&self) -> Result<File, String> {
        fs::create_dir_all(&self.staging).map_err(failed("create", &self.staging))?;
        let path = self.current_path(self.subtask);
        File::create(&path).map_err(failed("create", &path))
    }

    /// Publishes the pending files of old subtask `subtask` for `pending` up to `checkpoint`.
    fn publish(&self, subtask: u32, pending: &[u64], checkpoint: u64) -> Result<(), String> {
        for &id in pending.iter().filter(|&&id| id <= checkpoint) {
            let from = self.staging.join(pending_name(subtask, id));
            let part = self.dir.join(part_name(id, subtask));
            match fs::rename(&from, &part) {
                // Published by an earlier `commit`.
                Err(e) if e.kind() == io::ErrorKind::NotFound && part.exists() => {}
                result => result.map_err(failed("publish", &from))?,
            }
        }
        Ok(())
    }

    /// Brings the files of subtask `subtask` back to `checkpoint`: removes its parts of later
    /// checkpoints, its pending files not in `pending`, and its current file; then publishes
    /// its pending files of `checkpoint` and earlier.
    fn reconcile(&self, subtask: u32, pending: &[u64], checkpoint: u64) -> Result<(), String> {
        for name in file_names(&self.dir)? {
            if part_id(&name, subtask).is_some_and(|id| id > checkpoint) {
                remove(&self.dir.join(name))?;
            }
        }
        for name in file_names(&self.staging)? {
            if pending_id(&name, subtask).is_some_and(|id| !pending.contains(&id)) {
                remove(&self.staging.join(name))?;
            }
        }
        remove(&self.current_path(subtask))?;
        self.publish(subtask, pending, checkpoint)
    }
}

impl jobhost_guest::Sink for FileSink {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            rescale: Rescale::Union,
            ..jobhost_guest::module("file-sink", "1.1.0")
        }
    }

    fn init(ctx: &Context) -> Result<Self, String> {
        let dir = PathBuf::from(config_value(&ctx.config, "dir")?);
        if !dir.is_dir() {
            return Err(format!(
                "config key `dir`: `{}` is not a directory",
                dir.display()
            ));
        }
        Ok(Self {
            staging: dir.join(".staging"),
            dir,
            subtask: ctx.subtask,
            parallelism: ctx.parallelism,
            current: None,
            pending: Vec::new(),
            restored: Vec::new(),
        })
    }

    fn write(&mut self, input: Records<'_>) -> Result<(), String> {
        let path = self.current_path(self.subtask);
        let writer = match self.current.take() {
            Some(writer) => writer,
            None => BufWriter::new(self.create_current()?),
        };
        let writer = self.current.insert(writer);
        let mut input = input;
        input
            .try_for_each(|r| {
                writer.write_all(r.value)?;
                writer.write_all(b"\n")
            })
            .map_err(failed("write", &path))
    }

    fn prepare_commit(&mut self, checkpoint: u64) -> Result<(), String> {
        if let Some(&last) = self.pending.last().filter(|&&last| last >= checkpoint) {
            return Err(format!(
                "checkpoint {checkpoint} is not after pending checkpoint {last}"
            ));
        }
        let path = self.current_path(self.subtask);
        let file = match self.current.take() {
            Some(writer) => writer
                .into_inner()
                .map_err(|e| failed("write", &path)(e.into_error()))?,
            None => self.create_current()?,
        };
        file.sync_all().map_err(failed("sync", &path))?;
        let pending = self.staging.join(pending_name(self.subtask, checkpoint));
        fs::rename(&path, &pending).map_err(failed("rename", &path))?;
        self.pending.push(checkpoint);
        Ok(())
    }

    /// Publishes the pending files of `checkpoint` and earlier, oldest first.
    fn commit(&mut self, checkpoint: u64) -> Result<(), String> {
        self.publish(self.subtask, &self.pending, checkpoint)?;
        self.pending.retain(|&id| id > checkpoint);
        Ok(())
    }

    fn recover(&mut self, checkpoint: u64) -> Result<(), String> {
        self.current = None;
        for (subtask, pending) in std::mem::take(&mut self.restored) {
            self.reconcile(subtask, &pending, checkpoint)?;
        }
        self.pending.retain(|&id| id > checkpoint);
        Ok(())
    }

    fn snapshot(&mut self, checkpoint: u64) -> Result<Vec<u8>, String> {
        let pending = self.pending.clone();
        encode_state(
            STATE_VERSION,
            &State {
                checkpoint,
                pending,
            },
        )
    }

    /// Loads the state, in memory only: `recover` reconciles the files.
    fn restore(&mut self, from: Restore) -> Result<(), String> {
        let mut states = Vec::with_capacity(from.states.len());
        for blob in &from.states {
            let mut state: State = decode_state_exact(blob, STATE_VERSION)?;
            state.pending.sort_unstable();
            state.pending.dedup();
            states.push(state);
        }
        self.current = None;
        if from.parallelism == self.parallelism {
            let own = states.pop().unwrap_or_default();
            self.restored = vec![(self.subtask, own.pending.clone())];
            self.pending = own.pending;
            return Ok(());
        }
        let mine = states.into_iter().enumerate();
        let mine = mine.filter(|(old, _)| *old as u32 % self.parallelism == self.subtask);
        self.restored = mine
            .map(|(old, state)| (old as u32, state.pending))
            .collect();
        self.pending = Vec::new();
        Ok(())
    }
}

jobhost_guest::export_sink!(FileSink);

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::{Batch, BatchBuilder, Sink, StateOrigin, records};

    fn sink(dir: &Path, subtask: u32, parallelism: u32) -> FileSink {
        let config = vec![("dir".to_owned(), dir.display().to_string())];
        let ctx = Context {
            operator_id: "out".to_owned(),
            subtask,
            parallelism,
            max_parallelism: 128,
            key_group_start: 0,
            key_group_end: 0,
            config,
        };
        FileSink::init(&ctx).unwrap()
    }

    fn write(sink: &mut FileSink, values: &[&str]) {
        let mut batch = BatchBuilder::new();
        for value in values {
            batch.push(b"", value.as_bytes(), 0).unwrap();
        }
        let batch: Batch = batch.into();
        sink.write(records(&batch).unwrap()).unwrap();
    }

    fn from(parallelism: u32, states: Vec<Vec<u8>>) -> Restore {
        let origin = StateOrigin {
            module_name: "file-sink".to_owned(),
            module_version: "1.1.0".to_owned(),
            module_sha256: String::new(),
        };
        Restore {
            parallelism,
            states,
            origin,
        }
    }

    /// The files under `dir`, with their contents.
    fn files(dir: &Path) -> Vec<(String, String)> {
        let mut files: Vec<_> = ["", ".staging"]
            .into_iter()
            .flat_map(|sub| {
                let names = file_names(&dir.join(sub)).unwrap();
                names.into_iter().map(move |name| Path::new(sub).join(name))
            })
            .filter(|path| path != Path::new(".staging"))
            .map(|path| {
                let contents = fs::read_to_string(dir.join(&path)).unwrap();
                (path.display().to_string(), contents)
            })
            .collect();
        files.sort();
        files
    }

    fn owned(files: &[(&str, &str)]) -> Vec<(String, String)> {
        files
            .iter()
            .map(|&(path, contents)| (path.to_owned(), contents.to_owned()))
            .collect()
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("file-sink-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn commits_in_two_phases_and_rolls_back_on_recover() {
        let dir = scratch("two-phases");
        let mut other = sink(&dir, 0, 2);
        other.prepare_commit(1).unwrap();
        other.commit(1).unwrap();

        let mut first = sink(&dir, 1, 2);
        write(&mut first, &["a", "b"]);
        first.prepare_commit(1).unwrap();
        first.commit(1).unwrap();
        first.commit(1).unwrap();
        write(&mut first, &["c"]);
        first.prepare_commit(2).unwrap();
        let state = first.snapshot(2).unwrap();
        write(&mut first, &["d"]);
        first.prepare_commit(3).unwrap();
        write(&mut first, &["e"]);
        first.prepare_commit(4).unwrap();
        first.commit(3).unwrap();
        write(&mut first, &["f"]);
        first.current.take().unwrap().flush().unwrap();
        assert_eq!(
            files(&dir),
            owned(&[
                (".staging/1-4.pending", "e\n"),
                (".staging/1.current", "f\n"),
                ("part-000000000001-0.txt", ""),
                ("part-000000000001-1.txt", "a\nb\n"),
                ("part-000000000002-1.txt", "c\n"),
                ("part-000000000003-1.txt", "d\n"),
            ])
        );

        // Back to checkpoint 2, whose commit had not happened yet as far as its state knows.
        // Restoring touches no file; recovering does.
        let before = files(&dir);
        let mut second = sink(&dir, 1, 2);
        second.restore(from(2, vec![state])).unwrap();
        assert_eq!(files(&dir), before, "restore changed the folder");
        second.recover(2).unwrap();
        write(&mut second, &["g"]);
        second.prepare_commit(3).unwrap();
        let again = Err("checkpoint 3 is not after pending checkpoint 3".to_owned());
        assert_eq!(second.prepare_commit(3), again);
        second.commit(3).unwrap();
        assert_eq!(
            files(&dir),
            owned(&[
                ("part-000000000001-0.txt", ""),
                ("part-000000000001-1.txt", "a\nb\n"),
                ("part-000000000002-1.txt", "c\n"),
                ("part-000000000003-1.txt", "g\n"),
            ])
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rescaled_subtasks_reconcile_each_old_subtask_once() {
        let dir = scratch("rescale");
        // Three old subtasks, each with checkpoint 1 published, 2 pending, 3 written after.
        let mut states = Vec::new();
        for s in 0..3 {
            let mut old = sink(&dir, s, 3);
            write(&mut old, &[&format!("one-{s}")]);
            old.prepare_commit(1).unwrap();
            old.commit(1).unwrap();
            write(&mut old, &[&format!("two-{s}")]);
            old.prepare_commit(2).unwrap();
            states.push(old.snapshot(2).unwrap());
            write(&mut old, &[&format!("three-{s}")]);
            old.prepare_commit(3).unwrap();
            old.commit(3).unwrap();
        }
        // To 2: new 0 takes old 0 and 2, new 1 takes old 1.
        let mut new: Vec<FileSink> = (0..2).map(|s| sink(&dir, s, 2)).collect();
        for s in &mut new {
            s.restore(from(3, states.clone())).unwrap();
        }
        assert_eq!(
            new[0].restored.iter().map(|r| r.0).collect::<Vec<_>>(),
            [0, 2]
        );
        for s in &mut new {
            s.recover(2).unwrap();
        }
        let parts: Vec<String> = files(&dir)
            .into_iter()
            .map(|(name, text)| name + ":" + &text)
            .collect();
        assert_eq!(
            parts,
            [1, 2]
                .iter()
                .flat_map(|c| (0..3).map(move |s| {
                    let word = if *c == 1 { "one" } else { "two" };
                    format!("part-{c:012}-{s}.txt:{word}-{s}\n")
                }))
                .collect::<Vec<_>>()
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn names_parse_back_exactly() {
        assert_eq!(part_name(42, 3), "part-000000000042-3.txt");
        assert_eq!(part_id("part-000000000042-3.txt", 3), Some(42));
        assert_eq!(part_id(&part_name(u64::MAX, 0), 0), Some(u64::MAX));
        assert_eq!(pending_id("3-42.pending", 3), Some(42));
        for name in [
            "part-000000000042-13.txt",
            "part-000000000042-3.txt.tmp",
            "part-42-3.txt",
            "part-+00000000042-3.txt",
            "part-000000000042-03.txt",
            "13-42.pending",
            "3-042.pending",
            "3-+42.pending",
            "3.current",
        ] {
            assert_eq!(part_id(name, 3).or(pending_id(name, 3)), None, "{name}");
        }
    }
}
