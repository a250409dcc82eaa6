//! A connector's `config` table, typed: what the job file says of a NATS JetStream source or
//! sink (`config/nats.rs`), a PostgreSQL sink, or a Kafka source or sink (`config/kafka.rs`), checked when the
//! job file is validated (before anything connects), so that every mistake is reported at once
//! with the job file's other problems.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ids::Role;
use kafka::{KafkaTable, kafka_sink, kafka_source};
use nats::{NatsTable, nats_sink, nats_source};

/// How long a NATS sink's stream must deduplicate unless its config says otherwise:
/// JetStream's own default duplicate window (two minutes).
pub const DUPLICATE_WINDOW_MIN_MS_DEFAULT: u64 = 120_000;

/// Which connector an operator is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectorKind {
    /// NATS JetStream: a source (a stream read from a sequence) or a sink (published at commit).
    Nats,
    /// PostgreSQL: a sink (two-phase commit, or upserts at commit).
    Postgres,
    /// Kafka: a source (partitions read from their offsets) or a sink (at least once: each
    /// checkpoint's records produced at commit, with ids that make a repeat an exact copy).
    Kafka,
}

impl ConnectorKind {
    /// Its name in the job file.
    pub fn name(self) -> &'static str {
        match self {
            ConnectorKind::Nats => "nats",
            ConnectorKind::Postgres => "postgres",
            ConnectorKind::Kafka => "kafka",
        }
    }
}

/// A connector's configuration, by kind and role.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectorConfig {
    /// `connector = "nats"`, `role = "source"`.
    NatsSource(NatsSource),
    /// `connector = "nats"`, `role = "sink"`.
    NatsSink(NatsSink),
    /// `connector = "postgres"`, `role = "sink"`.
    PostgresSink(PostgresSink),
    /// `connector = "kafka"`, `role = "source"`.
    KafkaSource(KafkaSource),
    /// `connector = "kafka"`, `role = "sink"`.
    KafkaSink(KafkaSink),
    /// A shadow run's stand-in for a sink, never in a job file
    /// ([`super::capture`]).
    Capture(super::capture::Captured),
}

/// Where a secret is: never the secret itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretRef {
    /// In this environment variable of the host's process.
    Env(String),
    /// In this file (its first line), resolved against the job file's folder.
    File(PathBuf),
}

/// How a NATS connector authenticates, if the server asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NatsAuth {
    /// The server needs no credentials.
    None,
    /// A user and a password.
    UserPassword {
        /// The user.
        user: String,
        /// Where the password is.
        password: SecretRef,
    },
    /// A token.
    Token(SecretRef),
}

/// A JetStream source: a stream, read in order from the sequence after its checkpoint's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSource {
    /// `nats://host:port`, without credentials.
    pub url: String,
    /// The stream.
    pub stream: String,
    /// Subject filters, one ordered consumer each, dealt to subtasks round-robin (filter `k`
    /// to subtask `k % parallelism`); empty: the whole stream, one consumer.
    pub subjects: Vec<String>,
    /// Whether each subtask ends once it has read what its subjects held when it started
    /// (tests, demos); a stream is unbounded otherwise.
    pub stop_at_end: bool,
    /// Credentials.
    pub auth: NatsAuth,
}

/// A JetStream sink: each checkpoint's records, published at commit with ids the stream
/// deduplicates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NatsSink {
    /// `nats://host:port`, without credentials.
    pub url: String,
    /// The stream the subject belongs to, whose duplicate window is checked.
    pub stream: String,
    /// The subject every record is published to.
    pub subject: String,
    /// The shortest duplicate window the stream may have: how long after a crash a commit
    /// may be repeated without duplicates (a resume must come within it).
    pub duplicate_window_min_ms: u64,
    /// Credentials.
    pub auth: NatsAuth,
}

/// How a PostgreSQL sink makes a checkpoint's rows visible.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PostgresMode {
    /// Rows go into one transaction per subtask and checkpoint, prepared (`PREPARE
    /// TRANSACTION`) with the checkpoint and committed (`COMMIT PREPARED`) once it completes.
    #[default]
    TwoPhase,
    /// Rows are kept with the checkpoint and upserted by key (`INSERT ... ON CONFLICT DO
    /// UPDATE`) in one ordinary transaction once it completes; the table's key must be unique.
    Upsert,
}

/// A PostgreSQL sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresSink {
    /// A `postgres://user@host:port/database` URL (or `key=value` pairs), without a password.
    pub url: String,
    /// The table, `name` or `schema.name`, with columns `key`, `value` and `ts`.
    pub table: String,
    /// How rows become visible.
    pub mode: PostgresMode,
    /// Where the password is, if the server asks for one.
    pub password: Option<SecretRef>,
    /// What its transactions' ids start with: `{operator}.{table}` unless set.
    pub transaction_prefix: Option<String>,
}

/// How a Kafka connector authenticates: SASL PLAIN over plain TCP, if the broker asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaAuth {
    /// The user.
    pub user: String,
    /// Where the password is.
    pub password: SecretRef,
}

/// A Kafka source: a topic's partitions, each read from the offset after its checkpoint's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSource {
    /// `host:port[,host:port...]`, the bootstrap brokers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Whether each subtask ends once its partitions are read to their end (tests, demos).
    pub stop_at_end: bool,
    /// Credentials, if the broker asks.
    pub auth: Option<KafkaAuth>,
}

/// A Kafka sink: each checkpoint's records, produced at commit (at least once), each with a
/// deterministic id header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaSink {
    /// `host:port[,host:port...]`, the bootstrap brokers.
    pub brokers: String,
    /// The topic.
    pub topic: String,
    /// Credentials, if the broker asks.
    pub auth: Option<KafkaAuth>,
}

/// Why a connector's `config` table cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The kind has no connector for this role.
    #[error("the {kind} connector has no {role} (it has: {roles})")]
    Role {
        /// The kind.
        kind: &'static str,
        /// The role asked for.
        role: &'static str,
        /// The roles it has.
        roles: &'static str,
    },
    /// A key is missing, unknown or of the wrong type.
    #[error("config: {0}")]
    Table(String),
    /// A secret written into the job file, which every point records.
    #[error(
        "config: `{key}` holds a secret in the job file, which every checkpoint and savepoint \
         records verbatim; name where it is instead: `{key}_env = \"VARIABLE\"` or \
         `{key}_file = \"path\"`"
    )]
    SecretInJobFile {
        /// The key.
        key: &'static str,
    },
    /// A URL with a password in it.
    #[error(
        "config: `url` holds a password, which every checkpoint and savepoint would record; \
         remove it and set `password_env` or `password_file`"
    )]
    SecretInUrl,
    /// A URL that does not parse.
    #[error("config: `url` is not a {kind} URL: {reason}")]
    Url {
        /// The connector's kind.
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// Both `X_env` and `X_file`, or a user without a password.
    #[error("config: {0}")]
    Secret(&'static str),
    /// Not a table name.
    #[error(
        "config: table `{0}` is not a plain name: use letters, digits and `_` (`schema.table` \
         at most), starting with a letter or `_`"
    )]
    TableName(String),
    /// A transaction prefix PostgreSQL ids cannot hold.
    #[error("config: transaction_prefix `{0}` is not 1 to 64 letters, digits, `_`, `-` or `.`")]
    TransactionPrefix(String),
    /// More subtasks than subject filters: some would read nothing.
    #[error(
        "parallelism {parallelism} is above the {filters} subject filter(s) of `subjects`: each \
         subtask reads whole filters; list more subjects or lower the parallelism"
    )]
    ParallelismAboveSubjects {
        /// The operator's parallelism.
        parallelism: u32,
        /// Its filters (1 for the whole stream).
        filters: usize,
    },
    /// Not a Kafka topic name.
    #[error(
        "config: topic `{0}` is not a Kafka topic name: 1 to 249 letters, digits, `.`, `_` or `-`"
    )]
    TopicName(String),
    /// Not a list of `host:port` brokers.
    #[error("config: brokers `{0}` is not a list of host:port, separated by commas")]
    Brokers(String),
    /// A name NATS cannot take.
    #[error("config: `{key}` = `{value}` is not a valid NATS name")]
    NatsName {
        /// The key.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

/// Refuses `key` in the table of a connector whose role does not take it.
fn not_for(role: &str, key: &str, present: bool) -> Result<(), ConfigError> {
    match present {
        true => Err(ConfigError::Table(format!(
            "a NATS {role} takes no `{key}`"
        ))),
        false => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PostgresTable {
    url: String,
    table: String,
    #[serde(default)]
    mode: PostgresMode,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
    transaction_prefix: Option<String>,
}

/// A prefix of transaction ids: 1 to 64 letters, digits, `_`, `-` or `.`.
fn transaction_prefix(prefix: &str) -> Result<(), ConfigError> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if prefix.is_empty() || prefix.len() > 64 || !prefix.chars().all(plain) {
        return Err(ConfigError::TransactionPrefix(prefix.to_owned()));
    }
    Ok(())
}

impl ConnectorConfig {
    /// The configuration of connector `kind` in `role`, at `parallelism`, from its `config`
    /// table. Secret file paths stay as written ([`ConnectorConfig::resolved_against`]).
    pub fn parse(
        kind: ConnectorKind,
        role: Role,
        parallelism: u32,
        table: &toml::Table,
    ) -> Result<Self, ConfigError> {
        for key in ["password", "token"] {
            if table.contains_key(key) {
                return Err(ConfigError::SecretInJobFile { key });
            }
        }
        let value = toml::Value::Table(table.clone());
        let bad = |e: toml::de::Error| ConfigError::Table(e.message().to_owned());
        match (kind, role) {
            (ConnectorKind::Nats, Role::Source) => {
                let t: NatsTable = value.try_into().map_err(bad)?;
                nats_source(t, parallelism).map(ConnectorConfig::NatsSource)
            }
            (ConnectorKind::Nats, Role::Sink) => {
                let t: NatsTable = value.try_into().map_err(bad)?;
                nats_sink(t).map(ConnectorConfig::NatsSink)
            }
            (ConnectorKind::Postgres, Role::Sink) => {
                let t: PostgresTable = value.try_into().map_err(bad)?;
                postgres_sink(t).map(ConnectorConfig::PostgresSink)
            }
            (ConnectorKind::Kafka, Role::Source) => {
                let t: KafkaTable = value.try_into().map_err(bad)?;
                kafka_source(t).map(ConnectorConfig::KafkaSource)
            }
            (ConnectorKind::Kafka, Role::Sink) => {
                let t: KafkaTable = value.try_into().map_err(bad)?;
                kafka_sink(t).map(ConnectorConfig::KafkaSink)
            }
            (kind, role) => Err(ConfigError::Role {
                kind: kind.name(),
                role: match role {
                    Role::Source => "source",
                    Role::Operator => "operator",
                    Role::Sink => "sink",
                },
                roles: match kind {
                    ConnectorKind::Nats | ConnectorKind::Kafka => "source, sink",
                    ConnectorKind::Postgres => "sink",
                },
            }),
        }
    }

    /// The same, its secret files resolved against `base`, the job file's folder.
    pub fn resolved_against(mut self, base: &Path) -> Self {
        let resolve = |secret: &mut SecretRef| {
            if let SecretRef::File(path) = secret {
                *path = base.join(&*path);
            }
        };
        match &mut self {
            ConnectorConfig::NatsSource(NatsSource { auth, .. })
            | ConnectorConfig::NatsSink(NatsSink { auth, .. }) => match auth {
                NatsAuth::None => {}
                NatsAuth::UserPassword { password, .. } => resolve(password),
                NatsAuth::Token(token) => resolve(token),
            },
            ConnectorConfig::PostgresSink(sink) => sink.password.iter_mut().for_each(resolve),
            ConnectorConfig::KafkaSource(KafkaSource { auth, .. })
            | ConnectorConfig::KafkaSink(KafkaSink { auth, .. }) => {
                auth.iter_mut().for_each(|a| resolve(&mut a.password))
            }
            ConnectorConfig::Capture(_) => {}
        }
        self
    }

    /// The connector's kind, as a job file names it (a capture is in none).
    pub fn kind(&self) -> Option<ConnectorKind> {
        match self {
            ConnectorConfig::NatsSource(_) | ConnectorConfig::NatsSink(_) => {
                Some(ConnectorKind::Nats)
            }
            ConnectorConfig::PostgresSink(_) => Some(ConnectorKind::Postgres),
            ConnectorConfig::KafkaSource(_) | ConnectorConfig::KafkaSink(_) => {
                Some(ConnectorKind::Kafka)
            }
            ConnectorConfig::Capture(_) => None,
        }
    }

    /// Where its secret is, if it has one.
    pub fn secret(&self) -> Option<&SecretRef> {
        match self {
            ConnectorConfig::NatsSource(NatsSource { auth, .. })
            | ConnectorConfig::NatsSink(NatsSink { auth, .. }) => match auth {
                NatsAuth::None => None,
                NatsAuth::UserPassword { password, .. } => Some(password),
                NatsAuth::Token(token) => Some(token),
            },
            ConnectorConfig::PostgresSink(sink) => sink.password.as_ref(),
            ConnectorConfig::KafkaSource(KafkaSource { auth, .. })
            | ConnectorConfig::KafkaSink(KafkaSink { auth, .. }) => {
                auth.as_ref().map(|a| &a.password)
            }
            ConnectorConfig::Capture(_) => None,
        }
    }

    /// Whether its input must come over key-by edges only: an upsert sink applies each key's
    /// updates in the order one subtask saw them.
    pub fn needs_keyed_input(&self) -> bool {
        matches!(self, ConnectorConfig::PostgresSink(sink) if sink.mode == PostgresMode::Upsert)
    }
}

/// One secret from its two possible keys, `X_env` and `X_file`.
fn secret(
    env: Option<String>,
    file: Option<PathBuf>,
    both: &'static str,
) -> Result<Option<SecretRef>, ConfigError> {
    match (env, file) {
        (Some(_), Some(_)) => Err(ConfigError::Secret(both)),
        (Some(env), None) => Ok(Some(SecretRef::Env(env))),
        (None, Some(file)) => Ok(Some(SecretRef::File(file))),
        (None, None) => Ok(None),
    }
}

fn postgres_sink(t: PostgresTable) -> Result<PostgresSink, ConfigError> {
    let url = tokio_postgres::Config::from_str(&t.url).map_err(|e| ConfigError::Url {
        kind: "PostgreSQL",
        reason: e.to_string(),
    })?;
    if url.get_password().is_some() {
        return Err(ConfigError::SecretInUrl);
    }
    if !is_table_name(&t.table) {
        return Err(ConfigError::TableName(t.table));
    }
    if let Some(prefix) = &t.transaction_prefix {
        transaction_prefix(prefix)?;
    }
    Ok(PostgresSink {
        url: t.url,
        table: t.table,
        mode: t.mode,
        password: secret(
            t.password_env,
            t.password_file,
            "give `password_env` or `password_file`, not both",
        )?,
        transaction_prefix: t.transaction_prefix,
    })
}

/// `name` or `schema.name`, each part a plain SQL identifier (quoted when used, so case holds).
fn is_table_name(table: &str) -> bool {
    let part = |p: &str| {
        let mut chars = p.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
            && p.len() <= 63
    };
    let parts: Vec<&str> = table.split('.').collect();
    parts.len() <= 2 && parts.into_iter().all(part)
}

mod kafka;
mod nats;
#[cfg(test)]
mod tests;
