//! What the end-to-end tests expect, computed without the host: the input, the word counts it
//! must give, the output a run committed, and what "nothing changed" means for a folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Deterministic input: `lines` lines of 1 to 12 words from a vocabulary of 300, and in the
/// last fifth, also words never seen before (so an upgraded module meets new words too).
pub fn input_text(lines: usize) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut text = String::new();
    for n in 0..lines {
        let words = 1 + next() % 12;
        let late = n >= lines * 4 / 5;
        let line: Vec<String> = (0..words)
            .map(|_| match next() % 400 {
                word @ 300.. if late => format!("late{word}"),
                word => format!("w{}", word % 300),
            })
            .collect();
        text.push_str(&line.join(" "));
        text.push('\n');
    }
    text
}

/// How many times each word occurs in `text`: what an uninterrupted count ends with.
pub fn word_counts(text: &str) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for word in text.split_whitespace() {
        *counts.entry(word.to_owned()).or_default() += 1;
    }
    counts
}

/// Checks that the counter was upgraded from v1 to v2 mid-stream: v1 lines, then v2 lines, some
/// for a word counted before the upgrade (its count kept, and v2 knows it was migrated), some
/// for a word new to v2.
pub fn assert_v1_then_v2(output: &[String]) {
    let upgraded: Vec<_> = output
        .iter()
        .filter(|l| l.contains("first-seen="))
        .collect();
    assert!(
        !upgraded.is_empty() && upgraded.len() < output.len(),
        "v1 then v2 output expected"
    );
    assert!(
        upgraded.iter().any(|l| l.ends_with("first-seen=unknown")),
        "no migrated word"
    );
    assert!(
        upgraded.iter().any(|l| !l.ends_with("first-seen=unknown")),
        "no word new to v2"
    );
}

/// Checks that the committed output is exactly what an uninterrupted run writes: for every
/// word seen n times, the updates `word 1` … `word n`, each once (v1 `word count` lines and
/// v2 `word count first-seen=…` lines alike).
pub fn assert_exactly_once(output: &[String], input: &str) {
    let mut seen: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for line in output {
        let mut fields = line.split_whitespace();
        let (Some(word), Some(count)) = (fields.next(), fields.next()) else {
            panic!("malformed output line `{line}`");
        };
        *seen
            .entry((word.to_owned(), count.parse().expect("count")))
            .or_default() += 1;
    }
    let expected = word_counts(input);
    let repeated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).take(5).collect();
    assert!(
        repeated.is_empty(),
        "records repeated in the output (showing 5): {repeated:?}"
    );
    let mut lost = Vec::new();
    for (word, n) in &expected {
        for count in 1..=*n {
            if !seen.contains_key(&(word.clone(), count)) {
                lost.push(format!("{word} {count}"));
            }
        }
    }
    assert!(
        lost.is_empty(),
        "{} records lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let total: u64 = expected.values().sum();
    assert_eq!(output.len() as u64, total, "output has extra records");
}

/// The committed output of a word count run in `folder`: every part file of its sink under
/// `folder/output`, in checkpoint order.
pub fn committed_output_in(folder: &Path) -> Vec<String> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(folder.join("output"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    parts.sort();
    let lines = |p: &PathBuf| {
        let text = std::fs::read_to_string(p).unwrap();
        text.lines().map(str::to_owned).collect::<Vec<_>>()
    };
    parts.iter().flat_map(lines).collect()
}

/// Every file under a folder, with its state (see `Dir::snapshot_tree`).
pub type Tree = BTreeMap<PathBuf, FileState>;

/// What a file holds, as far as a test of "nothing changed" needs to know.
#[derive(Debug, PartialEq, Eq)]
pub enum FileState {
    /// A file of at most [`FileState::READ_MAX`] bytes: its bytes.
    Bytes(Vec<u8>),
    /// A larger one (a compiled module in the cache, tens of MiB each: reading them all
    /// twice a command made one test run for ten minutes): its length, modification time
    /// and inode, which any write through the file system changes. (Not its status-change
    /// time: other tests hard-link the same cache files, which changes it.)
    Large {
        len: u64,
        modified: std::time::SystemTime,
        inode: u64,
    },
}

impl FileState {
    /// Files up to this size are compared byte by byte.
    pub const READ_MAX: u64 = 1 << 20;

    pub fn of(path: &Path) -> FileState {
        use std::os::unix::fs::MetadataExt as _;
        let Ok(meta) = std::fs::metadata(path) else {
            return FileState::Bytes(Vec::new());
        };
        if meta.len() <= Self::READ_MAX {
            return FileState::Bytes(std::fs::read(path).unwrap_or_default());
        }
        FileState::Large {
            len: meta.len(),
            modified: meta.modified().unwrap(),
            inode: meta.ino(),
        }
    }
}

/// Asserts that two snapshots of a tree are the same (see [`FileState`]), naming what differs.
pub fn assert_same_tree(before: &Tree, after: &Tree, what: &str) {
    let added: Vec<_> = after.keys().filter(|p| !before.contains_key(*p)).collect();
    let removed: Vec<_> = before.keys().filter(|p| !after.contains_key(*p)).collect();
    let changed: Vec<_> = before
        .iter()
        .filter(|(p, bytes)| after.get(*p).is_some_and(|b| b != *bytes))
        .map(|(p, _)| p)
        .collect();
    assert!(
        added.is_empty() && removed.is_empty() && changed.is_empty(),
        "`{what}` changed files:\n  added {added:?}\n  removed {removed:?}\n  changed {changed:?}"
    );
}
