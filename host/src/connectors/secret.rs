//! Connectors' secrets: read once, from where the job file says they are (an environment
//! variable of the host's process, or a file), held in memory only, and never shown.
//!
//! The binary resolves them when it prepares a job ([`resolve`], given its environment: no
//! library module reads one) and hands them to the runtime with the plan; a connector takes
//! its own when it connects. A [`Secret`] prints as `***` (`Debug`) and has no `Display`, so it
//! cannot slip into a log line, an error, a status file or a point; the errors here name the
//! variable or the file, never what it holds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::config::SecretRef;
use crate::ids::OperatorId;
use crate::topology::{Implementation, Plan};

/// Longest secret file read: a password or a token, not a document.
pub const SECRET_FILE_BYTES_MAX: u64 = 64 << 10;

/// A password or a token. Only [`Secret::expose`] gives it out, to the client that sends it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret, for the connection that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Each connector operator's secret, by operator.
#[derive(Clone, Debug, Default)]
pub struct Secrets(BTreeMap<OperatorId, Secret>);

impl Secrets {
    /// The secret of `operator`, if it has one.
    pub fn of(&self, operator: &OperatorId) -> Option<&Secret> {
        self.0.get(operator)
    }
}

/// Why a secret cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The environment variable is not set (or not Unicode).
    #[error("operator `{operator}`: environment variable `{variable}` (its secret) is not set")]
    Unset {
        /// The operator.
        operator: OperatorId,
        /// The variable.
        variable: String,
    },
    /// The file cannot be read.
    #[error("operator `{operator}`: cannot read its secret file {path}: {source}")]
    File {
        /// The operator.
        operator: OperatorId,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is larger than a secret, or not UTF-8.
    #[error(
        "operator `{operator}`: its secret file {path} is not a secret (UTF-8 text of at most \
         {SECRET_FILE_BYTES_MAX} bytes)"
    )]
    NotASecret {
        /// The operator.
        operator: OperatorId,
        /// The file.
        path: PathBuf,
    },
    /// The variable or the file holds nothing.
    #[error("operator `{operator}`: its secret ({from}) is empty")]
    Empty {
        /// The operator.
        operator: OperatorId,
        /// Where it was read: `environment variable X` or a path.
        from: String,
    },
}

/// Reads the secret of every connector of `plan` that names one, from the environment as
/// `env` reads it, or from a file (its first line); every problem, not just the first.
pub fn resolve(
    plan: &Plan,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Secrets, Vec<SecretError>> {
    let (mut secrets, mut errors) = (BTreeMap::new(), Vec::new());
    for op in &plan.operators {
        let Implementation::Connector(config) = &op.implementation else {
            continue;
        };
        let Some(at) = config.secret() else {
            continue;
        };
        match read(&op.id, at, &env) {
            Ok(secret) => {
                secrets.insert(op.id.clone(), secret);
            }
            Err(error) => errors.push(error),
        }
    }
    match errors.is_empty() {
        true => Ok(Secrets(secrets)),
        false => Err(errors),
    }
}

/// The secret `at` names, for `operator`.
fn read(
    operator: &OperatorId,
    at: &SecretRef,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Secret, SecretError> {
    let operator = || operator.clone();
    let (value, from) = match at {
        SecretRef::Env(variable) => {
            let value = env(variable).ok_or_else(|| SecretError::Unset {
                operator: operator(),
                variable: variable.clone(),
            })?;
            (value, format!("environment variable `{variable}`"))
        }
        SecretRef::File(path) => (read_file(operator(), path)?, path.display().to_string()),
    };
    let value = value.lines().next().unwrap_or_default().to_owned();
    if value.is_empty() {
        return Err(SecretError::Empty {
            operator: operator(),
            from,
        });
    }
    Ok(Secret(value))
}

/// The text of the secret file at `path`, refused above [`SECRET_FILE_BYTES_MAX`].
fn read_file(operator: OperatorId, path: &std::path::Path) -> Result<String, SecretError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|source| SecretError::File {
        operator: operator.clone(),
        path: path.to_owned(),
        source,
    })?;
    let mut bytes = Vec::new();
    let read = file.take(SECRET_FILE_BYTES_MAX + 1).read_to_end(&mut bytes);
    read.map_err(|source| SecretError::File {
        operator: operator.clone(),
        path: path.to_owned(),
        source,
    })?;
    let not_a_secret = || SecretError::NotASecret {
        operator: operator.clone(),
        path: path.to_owned(),
    };
    if bytes.len() as u64 > SECRET_FILE_BYTES_MAX {
        return Err(not_a_secret());
    }
    String::from_utf8(bytes).map_err(|_| not_a_secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(secret: &str) -> Plan {
        let text = format!(
            "[[operators]]\nid = \"src\"\nrole = \"source\"\nmodule = \"s.wasm\"\n\
             [[operators]]\nid = \"db\"\nrole = \"sink\"\nconnector = \"postgres\"\n\
             config = {{ url = \"postgres://u@127.0.0.1/d\", table = \"t\", {secret} }}\n\
             [[edges]]\nfrom = \"src\"\nto = \"db\"\n"
        );
        Plan::from_toml(&text, std::path::Path::new("/jobs")).unwrap()
    }

    #[test]
    fn a_secret_comes_from_its_variable_and_never_prints() {
        let secrets = resolve(&plan("password_env = \"PW\""), |name| {
            (name == "PW").then(|| "hunter2\n".to_owned())
        })
        .unwrap();
        let secret = secrets.of(&"db".parse().unwrap()).unwrap();
        assert_eq!(secret.expose(), "hunter2");
        assert!(!format!("{secrets:?}").contains("hunter2"));
    }

    #[test]
    fn an_unset_variable_or_a_missing_file_is_named() {
        let errors = resolve(&plan("password_env = \"PW\""), |_| None).unwrap_err();
        assert_eq!(
            errors[0].to_string(),
            "operator `db`: environment variable `PW` (its secret) is not set"
        );
        let errors = resolve(&plan("password_file = \"no/such\""), |_| None).unwrap_err();
        let message = errors[0].to_string();
        assert!(message.contains("/jobs/no/such"), "{message}");
    }

    #[test]
    fn a_secret_file_gives_its_first_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pw"), "s3cret\nignored\n").unwrap();
        let text = format!("password_file = \"{}\"", dir.path().join("pw").display());
        let secrets = resolve(&plan(&text), |_| None).unwrap();
        assert_eq!(
            secrets.of(&"db".parse().unwrap()).unwrap().expose(),
            "s3cret"
        );
    }
}
