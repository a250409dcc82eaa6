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

mod bindings {
    #![allow(missing_docs, unsafe_code, clippy::too_many_arguments)]
    wit_bindgen::generate!({ world: "sink", path: "../../wit" });
    use super::FileSink;
    export!(FileSink);
}

use std::cell::RefCell;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use bindings::jobhost::operator::types::{Batch, Context, ModuleInfo, StateOrigin};
use jobhost_guest::{config_value, decode_state_exact, encode_state, records};
use serde::{Deserialize, Serialize};

jobhost_guest::batch_type!(Batch);

const STATE_VERSION: u32 = 1;

/// State version 1.
#[derive(Debug, Serialize, Deserialize)]
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

struct Sink {
    dir: PathBuf,
    staging: PathBuf,
    subtask: u32,
    /// The transaction being written, once something has been written since the last
    /// `init`, `restore` or `prepare-commit`.
    current: Option<BufWriter<File>>,
    /// The checkpoints whose pending files await `commit`, in increasing order.
    pending: Vec<u64>,
}

impl Sink {
    fn new(ctx: &Context) -> Result<Self, String> {
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
            current: None,
            pending: Vec::new(),
        })
    }

    fn current_path(&self) -> PathBuf {
        self.staging.join(format!("{}.current", self.subtask))
    }

    /// Creates, or truncates, the current transaction's file.
    fn create_current(&self) -> Result<File, String> {
        fs::create_dir_all(&self.staging).map_err(failed("create", &self.staging))?;
        let path = self.current_path();
        File::create(&path).map_err(failed("create", &path))
    }

    fn write(&mut self, input: &Batch) -> Result<(), String> {
        let mut records = records(input)?;
        let path = self.current_path();
        let writer = match self.current.take() {
            Some(writer) => writer,
            None => BufWriter::new(self.create_current()?),
        };
        let writer = self.current.insert(writer);
        records
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
        let path = self.current_path();
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
        while let Some(&id) = self.pending.first()
            && id <= checkpoint
        {
            let pending = self.staging.join(pending_name(self.subtask, id));
            let part = self.dir.join(part_name(id, self.subtask));
            match fs::rename(&pending, &part) {
                // Published by an earlier `commit`.
                Err(e) if e.kind() == io::ErrorKind::NotFound && part.exists() => {}
                result => result.map_err(failed("publish", &pending))?,
            }
            self.pending.remove(0);
        }
        Ok(())
    }

    fn snapshot(&self, checkpoint: u64) -> Result<Vec<u8>, String> {
        encode_state(
            STATE_VERSION,
            &State {
                checkpoint,
                pending: self.pending.clone(),
            },
        )
    }

    /// Goes back to `state`, in memory only: the files are reconciled by `recover`.
    fn restore(&mut self, state: State) {
        let State { mut pending, .. } = state;
        pending.sort_unstable();
        pending.dedup();
        self.current = None;
        self.pending = pending;
    }

    /// Brings the folder back to `checkpoint`, the one restored: removes this subtask's parts
    /// of later checkpoints, its pending files the restored state does not list, and its
    /// current file; then publishes the pending files of `checkpoint` and earlier.
    fn recover(&mut self, checkpoint: u64) -> Result<(), String> {
        for name in file_names(&self.dir)? {
            if part_id(&name, self.subtask).is_some_and(|id| id > checkpoint) {
                remove(&self.dir.join(name))?;
            }
        }
        for name in file_names(&self.staging)? {
            if pending_id(&name, self.subtask).is_some_and(|id| !self.pending.contains(&id)) {
                remove(&self.staging.join(name))?;
            }
        }
        self.current = None;
        remove(&self.current_path())?;
        self.commit(checkpoint)
    }
}

thread_local! {
    static SINK: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

fn with_sink<T>(f: impl FnOnce(&mut Sink) -> Result<T, String>) -> Result<T, String> {
    SINK.with_borrow_mut(|sink| f(sink.as_mut().ok_or("file-sink is not initialized")?))
}

struct FileSink;

impl bindings::Guest for FileSink {
    fn describe() -> ModuleInfo {
        ModuleInfo {
            name: "file-sink".to_owned(),
            version: "1.0.0".to_owned(),
        }
    }

    fn init(ctx: Context) -> Result<(), String> {
        let sink = Sink::new(&ctx)?;
        SINK.set(Some(sink));
        Ok(())
    }

    fn snapshot(checkpoint_id: u64) -> Result<Vec<u8>, String> {
        with_sink(|sink| sink.snapshot(checkpoint_id))
    }

    fn restore(state: Vec<u8>, _origin: StateOrigin) -> Result<(), String> {
        let state = decode_state_exact(&state, STATE_VERSION)?;
        with_sink(|sink| {
            sink.restore(state);
            Ok(())
        })
    }

    fn recover(checkpoint_id: u64) -> Result<(), String> {
        with_sink(|sink| sink.recover(checkpoint_id))
    }

    fn write_batch(input: Batch) -> Result<(), String> {
        with_sink(|sink| sink.write(&input))
    }

    fn prepare_commit(checkpoint_id: u64) -> Result<(), String> {
        with_sink(|sink| sink.prepare_commit(checkpoint_id))
    }

    fn commit(checkpoint_id: u64) -> Result<(), String> {
        with_sink(|sink| sink.commit(checkpoint_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::BatchBuilder;

    fn sink(dir: &Path, subtask: u32) -> Sink {
        let config = vec![("dir".to_owned(), dir.display().to_string())];
        let ctx = Context {
            operator_id: "out".to_owned(),
            subtask,
            parallelism: 2,
            config,
        };
        Sink::new(&ctx).unwrap()
    }

    fn batch(values: &[&str]) -> Batch {
        let mut batch = BatchBuilder::new();
        for value in values {
            batch.push(b"", value.as_bytes(), 0).unwrap();
        }
        batch.into()
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

    #[test]
    fn commits_in_two_phases_and_rolls_back_on_restore() {
        let dir = std::env::temp_dir().join(format!("file-sink-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let mut other = sink(&dir, 0);
        other.prepare_commit(1).unwrap();
        other.commit(1).unwrap();

        let mut first = sink(&dir, 1);
        first.write(&batch(&["a", "b"])).unwrap();
        first.prepare_commit(1).unwrap();
        first.commit(1).unwrap();
        first.commit(1).unwrap();
        first.write(&batch(&["c"])).unwrap();
        first.prepare_commit(2).unwrap();
        let state = first.snapshot(2).unwrap();
        first.write(&batch(&["d"])).unwrap();
        first.prepare_commit(3).unwrap();
        first.write(&batch(&["e"])).unwrap();
        first.prepare_commit(4).unwrap();
        first.commit(3).unwrap();
        first.write(&batch(&["f"])).unwrap();
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
        let mut second = sink(&dir, 1);
        second.restore(decode_state_exact(&state, STATE_VERSION).unwrap());
        assert_eq!(files(&dir), before, "restore changed the folder");
        second.recover(2).unwrap();
        second.write(&batch(&["g"])).unwrap();
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
