//! The host library's dependency rules, checked over its source text (`host/src/**`), so that
//! a forbidden edge fails the tests instead of waiting for a reviewer.
//!
//! Read "A -> B" as "A may use B"; every module may use `ids`. The direction:
//!
//! ```text
//! cli (the binary) -> jobs, serve -> control -> runtime -> engine, barrier, snapshot, store, topology
//! cli -> cluster -> runtime, points   (a job's subtasks on worker processes)
//! cli -> points -> store, topology       (points listed, checked, exported with no job running)
//! runtime -> store (writes state blobs, completes checkpoints);  engine -> durable (its cache)
//! snapshot, store -> checksum;  store, engine -> durable
//! runtime, engine, snapshot, topology -> time (watermarks and timers, decided without I/O)
//! ```
//!
//! What must never happen, one test each:
//! 1. The pure decisions (`barrier`, `topology`, `key_group`, `time`) import no tokio, no
//!    wasmtime, no `std::fs`, neither the store nor the engine: they are decided and tested
//!    without I/O.
//! 2. The engine imports neither the store, the runtime, the control socket nor tokio's
//!    channels: it runs guests, and is given a cache folder.
//! 3. The store imports no wasmtime, topology, engine or runtime: state blobs stay opaque bytes.
//! 4. `checksum` is a leaf (it imports nothing of the crate), and the snapshot names nothing of
//!    the store: the store uses the snapshot's `Held`, and a cycle would come back through the
//!    checksum otherwise.
//! 5. `durable` is a leaf, used by the store and the engine's cache alike.
//! 6. The runtime knows nothing of sockets (no `control`, no Unix sockets): it takes requests
//!    on a channel, and who sends them is someone else's business.
//! 7. No library module prints, exits or reads the environment: only the binary (`cli`,
//!    `main`) talks to the terminal and chooses exit codes; configuration is passed in.
//! 8. The runtime knows nothing of the cluster (`cluster -> runtime`, never back: a job in one
//!    process runs no code of it), and the cluster runs no guest itself (no wasmtime).
//!
//! Nothing in the library depends on the binary: `cli` and `main` are not part of it, so the
//! compiler enforces that one.

use std::path::{Path, PathBuf};

fn sources(under: &str) -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("src")
        .join(under);
    let mut files = Vec::new();
    let mut stack = vec![root.clone()];
    if root.is_file() {
        return vec![(root.clone(), std::fs::read_to_string(&root).unwrap())];
    }
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                files.push((path, text));
            }
        }
    }
    files
}

/// The text with every grouped import spelled out: `use crate::{store, engine::X};` also reads
/// as `crate::store` and `crate::engine::X`, so that a forbidden path cannot hide in braces.
fn expanded(text: &str) -> String {
    let mut out = text.to_owned();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let line = line.trim_start();
        let Some(at) = line.find("use ") else {
            continue;
        };
        if !matches!(&line[..at], "" | "pub " | "pub(crate) " | "pub(super) ") {
            continue;
        }
        // The statement, over as many lines as it takes, up to its `;`.
        let mut statement = line[at + 4..].to_owned();
        while !statement.contains(';') {
            let Some(next) = lines.next() else { break };
            statement.push_str(next);
        }
        let statement = &statement[..statement.find(';').unwrap_or(statement.len())];
        let spelled: String = statement.chars().filter(|c| !c.is_whitespace()).collect();
        out.push('\n');
        out.push_str(&spell_out("", &spelled).join("\n"));
    }
    out
}

/// The paths a `use` tree names: `a::{b, c::{d}}` -> `a::b`, `a::c::d`.
fn spell_out(prefix: &str, tree: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (tree.find('{'), tree.rfind('}')) else {
        return vec![format!("{prefix}{tree}")];
    };
    let head = format!("{prefix}{}", &tree[..open]);
    let inner = &tree[open + 1..close.max(open + 1)];
    let (mut items, mut depth, mut from) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&inner[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    items.push(&inner[from..]);
    items
        .into_iter()
        .filter(|item| !item.is_empty())
        .flat_map(|item| spell_out(&head, item))
        .collect()
}

fn assert_never(under: &str, forbidden: &[&str]) {
    for (path, text) in sources(under) {
        let text = expanded(&text);
        for needle in forbidden {
            assert!(
                !text.contains(needle),
                "{} uses `{needle}`, which its layer forbids",
                path.display()
            );
        }
    }
}

#[test]
fn grouped_imports_are_spelled_out() {
    let text = expanded("use crate::{store, engine::{Engine, bindings}};\nuse tokio::sync;");
    for path in [
        "crate::store",
        "crate::engine::Engine",
        "crate::engine::bindings",
        "tokio::sync",
    ] {
        assert!(text.contains(path), "{path} not in {text}");
    }
}

/// Rule 1.
#[test]
fn pure_decisions_do_no_io_and_need_no_runtime() {
    for module in [
        "barrier.rs",
        "topology.rs",
        "key_group.rs",
        "barrier",
        "topology",
        "time",
    ] {
        assert_never(
            module,
            &[
                "tokio",
                "wasmtime",
                "std::fs",
                "crate::store",
                "crate::engine",
            ],
        );
    }
}

/// Rule 2.
#[test]
fn the_engine_knows_neither_the_store_nor_channels() {
    assert_never(
        "engine",
        &[
            "crate::store",
            "crate::runtime",
            "tokio::sync",
            "crate::control",
        ],
    );
}

/// Rule 3.
#[test]
fn the_store_keeps_state_blobs_opaque() {
    assert_never(
        "store",
        &[
            "wasmtime",
            "crate::topology",
            "crate::engine",
            "crate::runtime",
        ],
    );
}

/// Rule 4.
#[test]
fn checksums_are_a_leaf_that_snapshots_and_the_store_share() {
    assert_never("checksum.rs", &["crate::"]);
    for module in ["snapshot.rs", "snapshot"] {
        assert_never(module, &["crate::store"]);
    }
}

/// Rule 5.
#[test]
fn durable_writes_are_a_leaf_that_both_the_store_and_the_engine_may_use() {
    assert_never("durable.rs", &["crate::"]);
}

/// Rule 6.
#[test]
fn the_runtime_knows_nothing_of_sockets() {
    assert_never("runtime", &["crate::control", "UnixListener", "UnixStream"]);
}

/// Rule 8.
#[test]
fn the_runtime_knows_nothing_of_the_cluster() {
    assert_never("runtime", &["crate::cluster"]);
    assert_never("cluster", &["wasmtime"]);
}

/// Rule 7.
#[test]
fn only_the_binary_prints_exits_or_reads_the_environment() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let binary = [src.join("cli"), src.join("main.rs")];
    let forbidden = ["println!", "print!(", "process::exit", "std::env::var"];
    let library = sources("");
    assert!(library.len() > 50, "the library's sources were not found");
    for (path, text) in library {
        if binary.iter().any(|b| path.starts_with(b)) {
            continue;
        }
        for needle in forbidden {
            assert!(
                !text.contains(needle),
                "{} uses `{needle}`: only the binary (cli/, main.rs) may",
                path.display()
            );
        }
    }
}
