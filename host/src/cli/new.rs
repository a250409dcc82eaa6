//! `host new`: a new operator project, outside this workspace, that builds and passes its own
//! unit test as generated.
//!
//! A Rust project depends on the `jobhost-guest` SDK by path (the checkout this host was built
//! from, or `--sdk`); Python and JavaScript projects (`interpreted.rs`, templates in `python/`
//! and `js/`) get a copy of their SDK module (from that checkout, or `--sdk`: `sdk/python/`,
//! `sdk/js/`) and of the WIT, the SDK's pinned toolchain, and a build and a test script. Each
//! holds one example of its role and a unit test of it.

mod interpreted;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use interpreted::{File, JS, Kit, PYTHON};

/// Why `host new` wrote no project, naming the file or name at fault.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The project's folder exists already.
    #[error("{} already exists: choose another name or remove it", .0.display())]
    Exists(PathBuf),
    /// The name is no id.
    #[error("{0}")]
    InvalidName(String),
    /// The name would make a module that shadows one the project needs.
    #[error(
        "`{name}` cannot name a {lang} project: its module would shadow one the SDK or the build needs, or is no identifier"
    )]
    TakenName {
        /// The name given.
        name: String,
        /// The project's language.
        lang: &'static str,
    },
    /// There is no SDK where one was looked for.
    #[error("no {lang} SDK at {} (pass --sdk PATH to its folder)", .path.display())]
    NoSdk {
        /// The SDK's language.
        lang: &'static str,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A file of the SDK could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The SDK's `package.json` is not JSON.
    #[error("{} is not a valid package.json", .path.display())]
    Manifest {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The SDK's WIT declares no package.
    #[error("no `package` line in the .wit files of {}", .path.display())]
    NoWitPackage {
        /// The WIT's folder.
        path: PathBuf,
    },
    /// A file of the project could not be written.
    #[error("cannot write {}", .path.display())]
    Write {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

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
    let dir = PathBuf::from(name);
    write_project(&dir, &project_files(name, lang, role, sdk)?)?;
    println!(
        "created {} ({lang:?} {role:?}); see {}/README.md",
        dir.display(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The files of project `name`, its SDK at `sdk` or in this host's checkout.
fn project_files(
    name: &str,
    lang: Lang,
    role: NewRole,
    sdk: Option<PathBuf>,
) -> Result<Vec<File>, NewError> {
    host::ids::check_id(name).map_err(NewError::InvalidName)?;
    if Path::new(name).exists() {
        return Err(NewError::Exists(name.into()));
    }
    let kit: &Kit = match lang {
        Lang::Rust => {
            let sdk = sdk.unwrap_or_else(|| checkout().join("sdk/rust"));
            return rust_files(name, role, &sdk);
        }
        Lang::Python => &PYTHON,
        Lang::Js => &JS,
    };
    let sdk = absolute(sdk.unwrap_or_else(|| checkout().join(kit.sdk)))?;
    if !sdk.join("jobhost").is_dir() {
        return Err(NewError::NoSdk {
            lang: kit.lang,
            path: sdk,
        });
    }
    interpreted::files(kit, name, role, &sdk)
}

fn absolute(path: PathBuf) -> Result<PathBuf, NewError> {
    std::path::absolute(&path).map_err(|source| NewError::Read { path, source })
}

/// Writes `files` into the new folder `dir`; scripts are made executable.
fn write_project(dir: &Path, files: &[File]) -> Result<(), NewError> {
    use std::os::unix::fs::PermissionsExt as _;
    for file in files {
        let path = dir.join(&file.path);
        let failed = |source| NewError::Write {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(path.parent().expect("a file in the project")).map_err(failed)?;
        std::fs::write(&path, &file.text).map_err(failed)?;
        if file.executable {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .map_err(failed)?;
        }
    }
    Ok(())
}

fn rust_files(name: &str, role: NewRole, sdk: &Path) -> Result<Vec<File>, NewError> {
    let sdk = absolute(sdk.to_owned())?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(NewError::NoSdk {
            lang: "rust",
            path: sdk,
        });
    }
    let crate_name = name.replace('-', "_");
    let (_, package) = contract(&sdk)?;
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{crate}}", &crate_name)
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace("{{wit}}", &package)
    };
    let lib = match role {
        NewRole::Operator => RUST_OPERATOR,
        NewRole::Source => RUST_SOURCE,
        NewRole::Sink => RUST_SINK,
    };
    let file = |path: &str, text| File {
        path: path.into(),
        text,
        executable: false,
    };
    let mut files = vec![
        file("Cargo.toml", fill(RUST_CARGO)),
        file("src/lib.rs", fill(lib)),
        file("README.md", fill(RUST_README)),
    ];
    // The versions the SDK was built and tested with: a new project starts from them.
    if let Ok(lock) = std::fs::read_to_string(sdk.join("../../Cargo.lock")) {
        files.push(file("Cargo.lock", lock));
    }
    Ok(files)
}

/// The contract a project's component implements: the WIT beside the SDK at `sdk` (its
/// `../../wit`, as a checkout lays them out; the Rust SDK generates its bindings from it), as
/// the files of a project's `wit/` folder, and the package it declares
/// (`jobhost:operator@0.3.2`), which the project's README names.
fn contract(sdk: &Path) -> Result<(Vec<File>, String), NewError> {
    let wit = interpreted::copied(sdk, "../../wit", "wit", "wit")?;
    match wit_package(wit.iter().map(|file| file.text.as_str())) {
        Some(package) => {
            let package = package.to_owned();
            Ok((wit, package))
        }
        None => Err(NewError::NoWitPackage {
            path: sdk.join("../../wit"),
        }),
    }
}

/// The package that the `.wit` files `texts` declare, by their `package NAME;` line.
fn wit_package<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let declared = |line: &'a str| line.trim().strip_prefix("package ")?.strip_suffix(';');
    texts
        .into_iter()
        .flat_map(str::lines)
        .find_map(declared)
        .map(str::trim)
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

The component implements `{{wit}}`, the contract the SDK generates its bindings from. See
`docs/authoring.md` of the job host for state, versions and what the host forbids.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The package line of the checkout's WIT, read as a person would: the one line that
    /// starts with `package`.
    fn checkout_package() -> String {
        let wit = std::fs::read_to_string(checkout().join("wit/operator.wit")).unwrap();
        let line = wit.lines().find(|l| l.starts_with("package ")).unwrap();
        line["package ".len()..line.len() - 1].to_owned()
    }

    fn readme(files: &[File]) -> &str {
        let readme = files.iter().find(|f| f.path == Path::new("README.md"));
        &readme.expect("a README").text
    }

    #[test]
    fn every_readme_names_the_wit_package_its_project_implements() {
        let package = format!("`{}`", checkout_package());
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            for role in [NewRole::Operator, NewRole::Source, NewRole::Sink] {
                let files = project_files("fresh-op", lang, role, None).unwrap();
                let readme = readme(&files);
                assert!(readme.contains(&package), "{lang:?} {role:?}: {readme}");
                assert!(!readme.contains("{{"), "{lang:?} {role:?}: {readme}");
            }
        }
    }

    #[test]
    fn a_wit_that_declares_no_package_is_refused_naming_its_folder() {
        let root = tempfile::tempdir().unwrap();
        let sdk = root.path().join("sdk/python");
        std::fs::create_dir_all(sdk.join("jobhost")).unwrap();
        std::fs::create_dir_all(root.path().join("wit")).unwrap();
        let wit = root.path().join("wit/operator.wit");
        std::fs::write(&wit, "/// package in a comment;\nworld w {}\n").unwrap();
        let refused = project_files("fresh-op", Lang::Python, NewRole::Sink, Some(sdk));
        let Err(NewError::NoWitPackage { path }) = refused else {
            panic!("not refused for its WIT");
        };
        assert_eq!(path, root.path().join("sdk/python/../../wit"));
        std::fs::write(&wit, "/// the contract\npackage a:b@1.2.3;\nworld w {}\n").unwrap();
        assert_eq!(
            wit_package([&*std::fs::read_to_string(&wit).unwrap()]),
            Some("a:b@1.2.3")
        );
    }
}
