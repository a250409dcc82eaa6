//! Identifiers shared by every module: jobs, operators, checkpoints and savepoints, and a
//! module's identity (the SHA-256 of its bytes).
//!
//! A leaf module: it depends on nothing else in the crate. Each id is a newtype so that a
//! checkpoint number is never passed where a subtask index is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Characters allowed in job, operator and savepoint ids: they appear in file names.
fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// A module's identity as points record it: the SHA-256 of its bytes, lower-case hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Returns an error message if `s` is not a valid id (1..=64 of `[A-Za-z0-9_-]`).
pub fn check_id(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 || !s.chars().all(is_id_char) {
        return Err(format!(
            "`{s}` is not a valid id: use 1 to 64 letters, digits, `-` or `_`"
        ));
    }
    Ok(())
}

/// Random lower-case alphanumeric string of `len` characters, for generated ids.
fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyz23456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The id as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                check_id(s)?;
                Ok(Self(s.to_owned()))
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                check_id(&s)?;
                Ok(Self(s))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }
    };
}

string_id!(
    /// One run of a job file, e.g. `job-7k2mq9`.
    JobId
);
string_id!(
    /// The stable id of an operator, named in the job file. State is mapped by it.
    OperatorId
);
string_id!(
    /// A pinned savepoint, e.g. `sp-job-7k2mq9-4-x3f`.
    SavepointId
);

impl JobId {
    /// A fresh, unique, printable job id.
    pub fn generate() -> Self {
        Self::generate_for("job")
    }

    /// A fresh, unique id for what `kind` wrote (`job`, or a tool that writes points offline,
    /// e.g. `state-write`): `kind-` and a random suffix.
    pub fn generate_for(kind: &str) -> Self {
        let id = Self(format!("{kind}-{}", random_suffix(8)));
        debug_assert!(check_id(&id.0).is_ok(), "{kind} makes valid ids");
        id
    }
}

impl SavepointId {
    /// A fresh savepoint id that names the job and checkpoint it came from.
    pub fn generate(job: &JobId, checkpoint: CheckpointId) -> Self {
        Self(format!(
            "sp-{}-{}-{}",
            job.0,
            checkpoint.0,
            random_suffix(4)
        ))
    }

    /// The checkpoint number this id names, if [`generate`](Self::generate) made it for `job`:
    /// how a savepoint whose `_metadata` is unreadable is still known to be `job`'s.
    pub fn checkpoint_of(&self, job: &JobId) -> Option<CheckpointId> {
        let rest = self.0.strip_prefix("sp-")?.strip_prefix(job.as_str())?;
        let (n, _) = rest.strip_prefix('-')?.split_once('-')?;
        n.parse().ok().map(CheckpointId)
    }
}

/// The number of a checkpoint within a job: 1, 2, 3… A job resumed from checkpoint N numbers
/// its own checkpoints from N + 1, so that sinks that name transactions by it never collide.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CheckpointId(pub u64);

impl CheckpointId {
    /// The checkpoint after this one.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

impl fmt::Display for CheckpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One subtask of an operator: `counter[1]` is subtask 1 of operator `counter`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SubtaskId {
    /// The operator this subtask belongs to.
    pub operator: OperatorId,
    /// The subtask's index, from 0 to parallelism - 1.
    pub index: u32,
}

impl fmt::Display for SubtaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.operator, self.index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_path_characters() {
        assert!("counter".parse::<OperatorId>().is_ok());
        assert!("../etc".parse::<OperatorId>().is_err());
        assert!("".parse::<JobId>().is_err());
        assert!("a b".parse::<SavepointId>().is_err());
    }

    #[test]
    fn generated_ids_are_valid_and_distinct() {
        let a = JobId::generate();
        let b = JobId::generate();
        assert_ne!(a, b);
        assert!(a.as_str().parse::<JobId>().is_ok());
        let sp = SavepointId::generate(&a, CheckpointId(4));
        assert!(sp.as_str().starts_with(&format!("sp-{a}-4-")));
        assert_eq!(sp.checkpoint_of(&a), Some(CheckpointId(4)));
        assert_eq!(sp.checkpoint_of(&b), None);
        let prefix: JobId = a.as_str()[..a.as_str().len() - 1].parse().unwrap();
        assert_eq!(sp.checkpoint_of(&prefix), None);
    }
}

/// The role of an operator, i.e. the WIT world its component targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Produces records (`world source`).
    Source,
    /// Transforms records (`world operator`).
    Operator,
    /// Writes records out with two-phase commit (`world sink`).
    Sink,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Source => "source",
            Role::Operator => "operator",
            Role::Sink => "sink",
        })
    }
}
