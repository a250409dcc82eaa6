//! The Python and JavaScript projects of `host new`: the templates of `python/` and `js/` (each
//! a role's module, its unit test, a build and a test script sharing one toolchain script, a
//! README), plus a copy of the language's SDK module and of the WIT it implements, and the
//! SDK's pinned toolchain (Python: `requirements.lock`, with hashes; JavaScript: the
//! dependencies of its `package.json` and its `package-lock.json`).

use std::path::{Path, PathBuf};

use super::{NewError, NewRole};

/// A template: the path it is written to and its text, both with `{{…}}` placeholders.
type Template = (&'static str, &'static str);

/// What a project in one of these languages is made of.
pub struct Kit {
    /// The language, as `--lang` spells it.
    pub lang: &'static str,
    /// The SDK's folder in the checkout (it holds `jobhost/` and the toolchain's lock).
    pub sdk: &'static str,
    /// The extension of the SDK's source files.
    sdk_extension: &'static str,
    /// Files of every project.
    common: &'static [Template],
    /// The module and its unit test, per role: operator, source, sink.
    roles: [[Template; 2]; 3],
}

macro_rules! templates {
    ($dir:literal: $($path:literal <- $file:literal),* $(,)?) => {
        &[$(($path, include_str!(concat!($dir, "/", $file)))),*]
    };
}

/// Python, with componentize-py.
pub const PYTHON: Kit = Kit {
    lang: "python",
    sdk: "guest-python",
    sdk_extension: "py",
    common: templates!("python":
        "README.md" <- "README.md",
        "toolchain.sh" <- "toolchain.sh",
        "build.sh" <- "build.sh",
        "test.sh" <- "test.sh",
        ".gitignore" <- "gitignore",
        "main.py" <- "main.py",
    ),
    roles: [
        [
            ("{{module}}.py", include_str!("python/operator.py")),
            (
                "test_{{module}}.py",
                include_str!("python/test_operator.py"),
            ),
        ],
        [
            ("{{module}}.py", include_str!("python/source.py")),
            ("test_{{module}}.py", include_str!("python/test_source.py")),
        ],
        [
            ("{{module}}.py", include_str!("python/sink.py")),
            ("test_{{module}}.py", include_str!("python/test_sink.py")),
        ],
    ],
};

/// JavaScript, with componentize-js.
pub const JS: Kit = Kit {
    lang: "js",
    sdk: "guest-js",
    sdk_extension: "js",
    common: templates!("js":
        "README.md" <- "README.md",
        "toolchain.sh" <- "toolchain.sh",
        "build.sh" <- "build.sh",
        "test.sh" <- "test.sh",
        ".gitignore" <- "gitignore",
        "build.mjs" <- "build.mjs",
    ),
    roles: [
        [
            ("{{module}}.js", include_str!("js/operator.js")),
            (
                "test/{{module}}.test.js",
                include_str!("js/operator.test.js"),
            ),
        ],
        [
            ("{{module}}.js", include_str!("js/source.js")),
            ("test/{{module}}.test.js", include_str!("js/source.test.js")),
        ],
        [
            ("{{module}}.js", include_str!("js/sink.js")),
            ("test/{{module}}.test.js", include_str!("js/sink.test.js")),
        ],
    ],
};

/// Python modules a project's module must not shadow: the SDK's, the entry's, and those of the
/// standard library that the SDK, msgpack and unittest import.
const PYTHON_TAKEN: &[&str] = &[
    "jobhost",
    "main",
    "wit_world",
    "abc",
    "collections",
    "copy",
    "dataclasses",
    "enum",
    "functools",
    "importlib",
    "io",
    "itertools",
    "json",
    "msgpack",
    "operator",
    "os",
    "re",
    "string",
    "struct",
    "sys",
    "traceback",
    "types",
    "typing",
    "unittest",
];

/// One file of a new project.
pub struct File {
    /// Its path in the project.
    pub path: PathBuf,
    /// Its contents.
    pub text: String,
    /// Whether it is a script the user runs.
    pub executable: bool,
}

/// The files of project `name` of `role` in `kit`'s language, its SDK at `sdk` (the SDK's
/// folder of a checkout, whose `../wit` is the contract).
pub fn files(kit: &Kit, name: &str, role: NewRole, sdk: &Path) -> Result<Vec<File>, NewError> {
    let module = module_name(kit, name)?;
    let class: String = name
        .split(['-', '_'])
        .flat_map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect();
    let role_name = format!("{role:?}").to_ascii_lowercase();
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{class}}", &class)
            .replace("{{role}}", &role_name)
    };
    let role_files = &kit.roles[role as usize];
    let mut files: Vec<File> = kit
        .common
        .iter()
        .chain(role_files)
        .map(|(path, text)| File {
            path: PathBuf::from(fill(path)),
            text: fill(text),
            executable: path.ends_with("build.sh") || path.ends_with("test.sh"),
        })
        .collect();
    files.extend(copied(sdk, "jobhost", kit.sdk_extension, "jobhost")?);
    files.extend(copied(sdk, "../wit", "wit", "wit")?);
    files.extend(toolchain(kit, name, sdk)?);
    Ok(files)
}

/// The module name of project `name`: Python's must be an identifier that shadows nothing.
fn module_name(kit: &Kit, name: &str) -> Result<String, NewError> {
    if kit.lang != PYTHON.lang {
        return Ok(name.to_owned());
    }
    let module = name.replace('-', "_");
    if module.starts_with(|c: char| c.is_ascii_digit()) || PYTHON_TAKEN.contains(&&*module) {
        return Err(NewError::TakenName {
            name: name.to_owned(),
            lang: kit.lang,
        });
    }
    Ok(module)
}

/// The files of `sdk/from` ending in `.extension`, as files of the project's folder `to`.
fn copied(sdk: &Path, from: &str, extension: &str, to: &str) -> Result<Vec<File>, NewError> {
    let dir = sdk.join(from);
    let read_dir = |source| NewError::Read {
        path: dir.clone(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(read_dir)? {
        let path = entry.map_err(read_dir)?.path();
        if path.extension().is_some_and(|e| e == extension) {
            let file_name = path.file_name().expect("a file in the folder");
            files.push(File {
                path: Path::new(to).join(file_name),
                text: read(&path)?,
                executable: false,
            });
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

fn read(path: &Path) -> Result<String, NewError> {
    std::fs::read_to_string(path).map_err(|source| NewError::Read {
        path: path.to_owned(),
        source,
    })
}

/// The pinned toolchain: Python's lock file as it is; JavaScript's `package.json` (this
/// project's name and scripts, the SDK's dependencies) and its lock file, renamed.
fn toolchain(kit: &Kit, name: &str, sdk: &Path) -> Result<Vec<File>, NewError> {
    let file = |path: &str, text: String| File {
        path: PathBuf::from(path),
        text,
        executable: false,
    };
    if kit.lang == PYTHON.lang {
        let lock = read(&sdk.join("requirements.lock"))?;
        return Ok(vec![file("requirements.lock", lock)]);
    }
    let manifest_path = sdk.join("package.json");
    let sdk_manifest: serde_json::Value =
        serde_json::from_str(&read(&manifest_path)?).map_err(|source| NewError::Manifest {
            path: manifest_path.clone(),
            source,
        })?;
    let manifest = serde_json::json!({
        "name": name,
        "private": true,
        "type": "module",
        "scripts": { "build": "./build.sh", "test": "./test.sh" },
        "dependencies": sdk_manifest["dependencies"],
        "devDependencies": sdk_manifest["devDependencies"],
    });
    let sdk_name = sdk_manifest["name"].as_str().unwrap_or_default();
    let lock = read(&sdk.join("package-lock.json"))?.replacen(
        &format!("\"name\": \"{sdk_name}\""),
        &format!("\"name\": \"{name}\""),
        2,
    );
    let manifest = serde_json::to_string_pretty(&manifest).expect("JSON values serialize") + "\n";
    Ok(vec![
        file("package.json", manifest),
        file("package-lock.json", lock),
    ])
}
