//! `host new`: a new operator project, outside this workspace, that builds and passes its own
//! unit test as generated.
//!
//! A Rust project depends on the `jobhost-guest` SDK by path (the checkout this host was built
//! from, or `--sdk`); Python and JavaScript projects get a copy of their SDK module and the
//! build script of their language. Each holds one example of its role, a test of it, and a
//! `job.toml` that runs it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};

/// The languages `host new` writes projects in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust, with the `jobhost-guest` SDK.
    Rust,
    /// Python, with componentize-py and the `jobhost` module.
    Python,
    /// JavaScript, with componentize-js and the `jobhost` module.
    Js,
}

/// The role of the new operator: the world it implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NewRole {
    /// Transforms records.
    Operator,
    /// Produces records.
    Source,
    /// Writes records out.
    Sink,
}

/// Where this host's checkout keeps the SDKs, as built.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes a new project `name` in the folder of that name.
pub fn new_project(
    name: &str,
    lang: Lang,
    role: NewRole,
    sdk: Option<PathBuf>,
) -> anyhow::Result<ExitCode> {
    host::ids::check_id(name).map_err(anyhow::Error::msg)?;
    let dir = PathBuf::from(name);
    if dir.exists() {
        bail!(
            "{} already exists: choose another name or remove it",
            dir.display()
        );
    }
    let files = match lang {
        Lang::Rust => rust_files(name, role, &sdk.unwrap_or_else(|| checkout().join("guest")))?,
        Lang::Python | Lang::Js => bail!(
            "`host new --lang {}` is not available in this build: see docs/authoring.md",
            if lang == Lang::Python { "python" } else { "js" }
        ),
    };
    for (path, text) in files {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("a file in the project"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "created {} ({lang:?} {role:?}); see {}/README.md",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn rust_files(
    name: &str,
    role: NewRole,
    sdk: &Path,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let sdk = std::path::absolute(sdk)?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!(
            "no jobhost-guest SDK at {} (pass --sdk PATH to its folder)",
            sdk.display()
        );
    }
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string())
    };
    let lib = match role {
        NewRole::Operator => RUST_OPERATOR,
        NewRole::Source => RUST_SOURCE,
        NewRole::Sink => RUST_SINK,
    };
    let mut files = vec![
        ("Cargo.toml", fill(RUST_CARGO)),
        ("src/lib.rs", fill(lib)),
        ("README.md", fill(RUST_README)),
    ];
    // The versions the SDK was built and tested with: a new project starts from them.
    if let Ok(lock) = std::fs::read_to_string(sdk.join("../Cargo.lock")) {
        files.push(("Cargo.lock", lock));
    }
    Ok(files)
}

const RUST_CARGO: &str = r#"[package]
name = "{{name}}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
jobhost-guest = { path = "{{sdk}}" }

# A project of its own, not a member of any workspace around it.
[workspace]

[profile.release]
opt-level = 3
lto = true
codegen-units = 1
strip = true
"#;

const RUST_README: &str = r#"# {{name}}

A job host operator in Rust. Test it natively, build the component, run it:

```sh
cargo test
cargo build --release --target wasm32-wasip2
# target/wasm32-wasip2/release/{{crate}}.wasm is the component; name it as `module` in a job file
```

See `docs/authoring.md` of the job host for state, versions and what the host forbids.
"#;

const RUST_OPERATOR: &str = r#"//! {{name}}: upper-cases each record's value, and counts records per key (keyed state, which
//! the SDK keeps by key group: checkpoints carry only what changed, and the job rescales).

use jobhost_guest::{BatchBuilder, Context, Keyed, ModuleInfo, Operator, Records, StateFormat};

/// The operator of one subtask.
pub struct Op;

impl Operator for Op {
    /// Records seen per key.
    type Value = u64;
    const STATE: StateFormat = StateFormat { name: "{{name}}-counts", version: 1 };

    fn describe() -> ModuleInfo {
        jobhost_guest::module("{{name}}", "0.1.0")
    }

    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(Op)
    }

    fn process(&mut self, input: Records<'_>, keyed: &mut Keyed<u64>, out: &mut BatchBuilder) -> Result<(), String> {
        for record in input {
            // Keyed state needs a key-by input edge; without one, leave `keyed` alone.
            if record.key_group.is_some() {
                *keyed.or_default(&record) += 1;
            }
            out.push(record.key, &record.value.to_ascii_uppercase(), record.timestamp)?;
        }
        Ok(())
    }
}

jobhost_guest::export_operator!(Op);

#[cfg(test)]
mod tests {
    use super::*;
    use jobhost_guest::{Batch, records};

    #[test]
    fn upper_cases_values_and_counts_keys() {
        let mut input = BatchBuilder::new();
        input.push(b"k", b"hello", 1).unwrap();
        input.push(b"k", b"world", 2).unwrap();
        let mut input: Batch = input.into();
        input.key_groups = vec![3, 3];
        let mut keyed = Keyed::new(0..128);
        let mut out = BatchBuilder::new();
        Op.process(records(&input).unwrap(), &mut keyed, &mut out).unwrap();
        let out: Batch = out.into();
        let values: Vec<&[u8]> = records(&out).unwrap().map(|r| r.value).collect();
        assert_eq!(values, [&b"HELLO"[..], &b"WORLD"[..]]);
        assert_eq!(keyed.iter().collect::<Vec<_>>(), [(&b"k"[..], &2)]);
    }
}
"#;

const RUST_SOURCE: &str = r#"//! {{name}}: emits the numbers 0..`count` (config key, default 1000) as records, spread over
//! its subtasks; its position is its state.

use jobhost_guest::{BatchBuilder, Context, ModuleInfo, Restore, Source, decode_state_exact, encode_state};

/// The source of one subtask.
pub struct Numbers {
    next: u64,
    count: u64,
    subtask: u64,
    parallelism: u64,
}

impl Source for Numbers {
    fn describe() -> ModuleInfo {
        jobhost_guest::module("{{name}}", "0.1.0")
    }

    fn init(ctx: &Context) -> Result<Self, String> {
        let count = jobhost_guest::config_or(&ctx.config, "count", 1000)?;
        Ok(Numbers { next: ctx.subtask.into(), count, subtask: ctx.subtask.into(), parallelism: ctx.parallelism.into() })
    }

    fn poll(&mut self, max_records: u32, out: &mut BatchBuilder) -> Result<bool, String> {
        while self.next < self.count && out.len() < max_records as usize {
            let n = self.next.to_string();
            out.push(n.as_bytes(), n.as_bytes(), self.next as i64)?;
            self.next += self.parallelism;
        }
        Ok(self.next < self.count)
    }

    fn snapshot(&mut self, _checkpoint: u64) -> Result<Vec<u8>, String> {
        encode_state(1, &self.next)
    }

    fn restore(&mut self, from: Restore) -> Result<(), String> {
        let [state] = &from.states[..] else {
            return Err(format!("{} positions for subtask {}: it does not rescale", from.states.len(), self.subtask));
        };
        self.next = decode_state_exact(state, 1)?;
        Ok(())
    }
}

jobhost_guest::export_source!(Numbers);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emits_its_share_and_ends() {
        let mut source = Numbers { next: 1, count: 6, subtask: 1, parallelism: 2 };
        let mut out = BatchBuilder::new();
        assert!(!source.poll(10, &mut out).unwrap());
        assert_eq!(out.len(), 3);
    }
}
"#;

const RUST_SINK: &str = r#"//! {{name}}: counts the records it is given and logs the count at each commit (a sink that
//! writes somewhere would prepare a transaction in `prepare_commit` and publish it in `commit`).

use jobhost_guest::{Context, ModuleInfo, Records, Restore, Sink, decode_state_exact, encode_state};

/// The sink of one subtask.
pub struct Counted {
    records: u64,
}

impl Sink for Counted {
    fn describe() -> ModuleInfo {
        jobhost_guest::module("{{name}}", "0.1.0")
    }

    fn init(_ctx: &Context) -> Result<Self, String> {
        Ok(Counted { records: 0 })
    }

    fn write(&mut self, input: Records<'_>) -> Result<(), String> {
        self.records += input.len() as u64;
        Ok(())
    }

    fn prepare_commit(&mut self, _checkpoint: u64) -> Result<(), String> {
        Ok(())
    }

    fn commit(&mut self, checkpoint: u64) -> Result<(), String> {
        println!("checkpoint {checkpoint}: {} records so far", self.records);
        Ok(())
    }

    fn recover(&mut self, _checkpoint: u64) -> Result<(), String> {
        Ok(())
    }

    fn snapshot(&mut self, _checkpoint: u64) -> Result<Vec<u8>, String> {
        encode_state(1, &self.records)
    }

    fn restore(&mut self, from: Restore) -> Result<(), String> {
        self.records = 0;
        for state in &from.states {
            self.records += decode_state_exact::<u64>(state, 1)?;
        }
        Ok(())
    }
}

jobhost_guest::export_sink!(Counted);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_what_it_counted() {
        let mut sink = Counted { records: 41 };
        let state = sink.snapshot(1).unwrap();
        assert_eq!(decode_state_exact::<u64>(&state, 1), Ok(41));
    }
}
"#;
