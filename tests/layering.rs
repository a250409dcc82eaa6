//! The dependency rules of `shared/STYLE.md` §3, checked over the host's source text, so that a
//! forbidden edge fails the build's tests instead of waiting for a reviewer.

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

#[test]
fn durable_writes_are_a_leaf_that_both_the_store_and_the_engine_may_use() {
    assert_never("durable.rs", &["crate::"]);
}

#[test]
fn the_runtime_knows_nothing_of_sockets() {
    assert_never("runtime", &["crate::control", "UnixListener", "UnixStream"]);
}

#[test]
fn only_the_binary_prints_exits_or_reads_the_environment() {
    for dir in [
        "admission.rs",
        "barrier.rs",
        "key_group.rs",
        "control.rs",
        "durable.rs",
        "export.rs",
        "gc.rs",
        "ids.rs",
        "lib.rs",
        "lineage.rs",
        "program.rs",
        "protected.rs",
        "savepoint.rs",
        "topology.rs",
        "engine",
        "runtime",
        "store",
    ] {
        assert_never(
            dir,
            &["println!", "print!(", "process::exit", "std::env::var"],
        );
    }
}
