//! A NATS JetStream connector's table as written, and its checks: the url, the stream and
//! subject names, the credentials, each role's own keys.

use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use super::{
    ConfigError, DUPLICATE_WINDOW_MIN_MS_DEFAULT, NatsAuth, NatsSink, NatsSource, SecretRef,
    not_for, secret,
};

/// The keys of a NATS connector's table as written (a source's and a sink's: each role
/// refuses the other's own keys).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NatsTable {
    url: String,
    stream: String,
    /// A source's.
    subjects: Option<Vec<String>>,
    /// A source's.
    stop_at_end: Option<bool>,
    /// A sink's.
    subject: Option<String>,
    /// A sink's.
    duplicate_window_min_ms: Option<u64>,
    user: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    token_env: Option<String>,
    token_file: Option<PathBuf>,
}

impl NatsTable {
    /// Its url and stream, checked, and its credentials.
    fn common(&mut self) -> Result<NatsAuth, ConfigError> {
        nats_url(&self.url)?;
        nats_name("stream", &self.stream, true)?;
        let password = secret(
            self.password_env.take(),
            self.password_file.take(),
            "give `password_env` or `password_file`, not both",
        )?;
        let token = secret(
            self.token_env.take(),
            self.token_file.take(),
            "give `token_env` or `token_file`, not both",
        )?;
        nats_auth(self.user.take(), password, token)
    }
}

/// NATS credentials: a user and password, a token, or none.
pub(super) fn nats_auth(
    user: Option<String>,
    password: Option<SecretRef>,
    token: Option<SecretRef>,
) -> Result<NatsAuth, ConfigError> {
    match (user, password, token) {
        (None, None, None) => Ok(NatsAuth::None),
        (Some(user), Some(password), None) => Ok(NatsAuth::UserPassword { user, password }),
        (None, None, Some(token)) => Ok(NatsAuth::Token(token)),
        (Some(_), None, _) | (None, Some(_), _) => Err(ConfigError::Secret(
            "`user` needs a password (`password_env` or `password_file`), and a password a `user`",
        )),
        _ => Err(ConfigError::Secret(
            "give a user and password, or a token, not both",
        )),
    }
}

/// A NATS URL without credentials.
pub(super) fn nats_url(url: &str) -> Result<(), ConfigError> {
    let addr = async_nats::ServerAddr::from_str(url).map_err(|e| ConfigError::Url {
        kind: "NATS",
        reason: e.to_string(),
    })?;
    if addr.has_user_pass() {
        return Err(ConfigError::SecretInUrl);
    }
    Ok(())
}

/// A stream or subject name NATS takes: no white space, not empty; a stream name without
/// `.`, `*` or `>`.
pub(super) fn nats_name(key: &'static str, value: &str, stream: bool) -> Result<(), ConfigError> {
    let forbidden = |c: char| c.is_whitespace() || (stream && matches!(c, '.' | '*' | '>'));
    if value.is_empty() || value.contains(forbidden) {
        return Err(ConfigError::NatsName {
            key,
            value: value.to_owned(),
        });
    }
    Ok(())
}

pub(super) fn nats_source(mut t: NatsTable, parallelism: u32) -> Result<NatsSource, ConfigError> {
    not_for("source", "subject", t.subject.is_some())?;
    not_for(
        "source",
        "duplicate_window_min_ms",
        t.duplicate_window_min_ms.is_some(),
    )?;
    let auth = t.common()?;
    let subjects = t.subjects.unwrap_or_default();
    for subject in &subjects {
        nats_name("subjects", subject, false)?;
    }
    let filters = subjects.len().max(1);
    if parallelism as usize > filters {
        return Err(ConfigError::ParallelismAboveSubjects {
            parallelism,
            filters,
        });
    }
    Ok(NatsSource {
        url: t.url,
        stream: t.stream,
        subjects,
        stop_at_end: t.stop_at_end.unwrap_or(false),
        auth,
    })
}

pub(super) fn nats_sink(mut t: NatsTable) -> Result<NatsSink, ConfigError> {
    not_for("sink", "subjects", t.subjects.is_some())?;
    not_for("sink", "stop_at_end", t.stop_at_end.is_some())?;
    let auth = t.common()?;
    let subject = t
        .subject
        .ok_or_else(|| ConfigError::Table("missing field `subject`".to_owned()))?;
    nats_name("subject", &subject, false)?;
    if subject.contains(['*', '>']) {
        return Err(ConfigError::NatsName {
            key: "subject",
            value: subject,
        });
    }
    Ok(NatsSink {
        url: t.url,
        stream: t.stream,
        subject,
        duplicate_window_min_ms: t
            .duplicate_window_min_ms
            .unwrap_or(DUPLICATE_WINDOW_MIN_MS_DEFAULT),
        auth,
    })
}
