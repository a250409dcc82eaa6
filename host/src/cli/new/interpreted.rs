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
    sdk: "sdk/python",
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
    sdk: "sdk/js",
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
/// folder of a checkout, whose `../../wit` is the contract).
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
    let (wit, package) = super::contract(sdk)?;
    let fill = |text: &str| {
        text.replace("{{name}}", name)
            .replace("{{module}}", &module)
            .replace("{{class}}", &class)
            .replace("{{role}}", &role_name)
            .replace("{{wit}}", &package)
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
    files.extend(wit);
    files.extend(toolchain(kit, name, sdk)?);
    Ok(files)
}

/// The module name of project `name`, which also names its class: not starting with a digit,
/// and in Python an identifier that shadows nothing.
fn module_name(kit: &Kit, name: &str) -> Result<String, NewError> {
    let python = kit.lang == PYTHON.lang;
    let module = if python {
        name.replace('-', "_")
    } else {
        name.to_owned()
    };
    let shadows = python && PYTHON_TAKEN.contains(&&*module);
    if module.starts_with(|c: char| c.is_ascii_digit()) || shadows {
        return Err(NewError::TakenName {
            name: name.to_owned(),
            lang: kit.lang,
        });
    }
    Ok(module)
}

/// The files of `sdk/from` ending in `.extension`, as files of the project's folder `to`.
pub(super) fn copied(
    sdk: &Path,
    from: &str,
    extension: &str,
    to: &str,
) -> Result<Vec<File>, NewError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk(kit: &Kit) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(kit.sdk)
    }

    fn paths(files: &[File]) -> Vec<String> {
        files.iter().map(|f| f.path.display().to_string()).collect()
    }

    #[test]
    fn a_python_project_names_its_module_and_class_after_the_project() {
        let files = files(&PYTHON, "my-op", NewRole::Operator, &sdk(&PYTHON)).unwrap();
        let paths = paths(&files);
        for path in [
            "my_op.py",
            "test_my_op.py",
            "main.py",
            "jobhost/__init__.py",
        ] {
            assert!(paths.contains(&path.to_owned()), "{path} not in {paths:?}");
        }
        for path in [
            "wit/operator.wit",
            "requirements.lock",
            "build.sh",
            "test.sh",
        ] {
            assert!(paths.contains(&path.to_owned()), "{path} not in {paths:?}");
        }
        let main = files
            .iter()
            .find(|f| f.path == Path::new("main.py"))
            .unwrap();
        assert!(
            main.text.contains("from my_op import MyOp\n"),
            "{}",
            main.text
        );
        let executable: Vec<&Path> = files
            .iter()
            .filter(|f| f.executable)
            .map(|f| f.path.as_path())
            .collect();
        assert_eq!(executable, [Path::new("build.sh"), Path::new("test.sh")]);
    }

    #[test]
    fn a_javascript_project_renames_the_sdk_lock_file_and_keeps_its_pins() {
        let files = files(&JS, "my-op", NewRole::Sink, &sdk(&JS)).unwrap();
        let text = |path: &str| {
            &files
                .iter()
                .find(|f| f.path == Path::new(path))
                .unwrap()
                .text
        };
        assert!(text("my-op.js").contains("class MyOp extends Sink"));
        assert!(text("test/my-op.test.js").contains("import { MyOp } from \"../my-op.js\";"));
        let lock: serde_json::Value = serde_json::from_str(text("package-lock.json")).unwrap();
        assert_eq!(lock["name"], "my-op");
        assert_eq!(lock["packages"][""]["name"], "my-op");
        let manifest: serde_json::Value = serde_json::from_str(text("package.json")).unwrap();
        assert_eq!(
            manifest["devDependencies"],
            lock["packages"][""]["devDependencies"]
        );
        assert_eq!(
            manifest["dependencies"],
            lock["packages"][""]["dependencies"]
        );
    }

    #[test]
    fn names_that_make_no_module_are_refused() {
        for (kit, name) in [(&PYTHON, "operator"), (&PYTHON, "1op"), (&JS, "1op")] {
            let refused = files(kit, name, NewRole::Operator, &sdk(kit));
            assert!(
                matches!(refused, Err(NewError::TakenName { .. })),
                "{} {name}",
                kit.lang
            );
        }
        assert!(files(&JS, "operator", NewRole::Operator, &sdk(&JS)).is_ok());
    }
}
