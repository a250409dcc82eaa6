//! Connectors built into the host: a NATS JetStream source and sink, a PostgreSQL sink, a
//! Kafka source and sink. They
//! play the roles components play (a source is polled, a sink writes, prepares and commits),
//! behind the same calls, so that the runtime runs a connector's subtask as it runs a guest's:
//! barriers, checkpoints, restore at another parallelism and `recover` are the same.
//!
//! Why native, not components with a network grant: the host holds the credentials (a guest
//! never sees a password), no guest gets a socket, and a connector runs at the client
//! library's speed. Where they sit in the flow: a source connector's `poll` is the first step
//! of "follow one record", a sink connector's `prepare_commit` and `commit` the sink's steps of
//! "follow one barrier". Each connector's state is its operator state (a version byte, then
//! postcard: [`state`]), handed to every new subtask from every old one at any parallelism,
//! the same one included ([`crate::snapshot::Rescale::Broadcast`]): each keeps what is its own
//! (a source its subject filters, a sink what old subtask `j` left, for `j % parallelism`).
//! See `docs/connectors.md`.

pub mod capture;
pub mod config;
pub mod kafka;
pub mod kept;
pub mod nats;
pub mod position;
pub mod postgres;
pub mod secret;
pub mod state;

use std::fmt;
use std::time::Duration;

use crate::engine::bindings::{Batch, ModuleInfo, PollResult, Rescale, Snapshot, StateOrigin};
use crate::engine::borrowed::RestoredRef;
use crate::ids::{JobId, SubtaskId};
use config::ConnectorConfig;
use secret::Secret;
use state::StateError;

/// Attempts to connect to a server before a connector gives up.
pub const CONNECT_ATTEMPTS_MAX: u32 = 3;
/// Pause after the first failed attempt; each later one doubles it.
pub const CONNECT_BACKOFF_MS: u64 = 200;
/// Longest one attempt to connect may take.
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;

/// What a connector's subtask starts from.
pub struct Setup<'a> {
    /// The job: transactions and message ids it creates name it.
    pub job: &'a JobId,
    /// The subtask.
    pub subtask: &'a SubtaskId,
    /// Its operator's parallelism.
    pub parallelism: u32,
    /// The connector's configuration.
    pub config: &'a ConnectorConfig,
    /// Its secret, if its configuration names one.
    pub secret: Option<&'a Secret>,
}

/// One subtask's connector: connected, checked, ready for its role's calls.
pub struct Connector {
    subtask: SubtaskId,
    body: Body,
}

/// Each connector boxed: they differ in size, and a subtask holds one for its life.
enum Body {
    NatsSource(Box<nats::source::Source>),
    NatsSink(Box<nats::sink::Sink>),
    Postgres(Box<postgres::Sink>),
    KafkaSource(Box<kafka::source::Source>),
    KafkaSink(Box<kafka::sink::Sink>),
    Capture(capture::Sink),
}

/// A connector call that failed, naming the subtask, the connector and the call.
#[derive(Debug, thiserror::Error)]
#[error("{subtask}: {connector} `{call}`: {cause}")]
pub struct ConnectorError {
    /// Which subtask.
    pub subtask: SubtaskId,
    /// Which connector (`jobhost:nats-source`, ...).
    pub connector: &'static str,
    /// Which call of its role.
    pub call: &'static str,
    /// What went wrong.
    pub cause: Box<Cause>,
}

/// What went wrong in a connector.
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// The server did not answer, or refused the connection (wrong credentials included).
    #[error("cannot connect to {url} ({attempts} attempts): {reason}")]
    Connect {
        /// The URL, as the job file gives it (it never holds a secret).
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last attempt's error.
        reason: Chain,
    },
    /// The stream does not exist.
    #[error("stream `{stream}` does not exist on {url}")]
    NoStream {
        /// The stream.
        stream: String,
        /// The server.
        url: String,
    },
    /// The topic does not exist.
    #[error("topic `{topic}` does not exist on {brokers}")]
    NoTopic {
        /// The topic.
        topic: String,
        /// The brokers asked.
        brokers: String,
    },
    /// The stream deduplicates for less time than a repeated commit needs.
    #[error(
        "stream `{stream}` deduplicates messages for {window_ms} ms, less than the {needed_ms} ms \
         a commit repeated after a crash needs (`duplicate_window_min_ms`): raise the stream's \
         duplicate window (`nats stream edit {stream} --dupe-window`), or lower the setting"
    )]
    DuplicateWindow {
        /// The stream.
        stream: String,
        /// Its duplicate window.
        window_ms: u64,
        /// What the config asks.
        needed_ms: u64,
    },
    /// The sink's subject does not belong to its stream.
    #[error("subject `{subject}` is stored by stream `{found}`, not by `{stream}`")]
    WrongStream {
        /// The subject.
        subject: String,
        /// The stream the config names.
        stream: String,
        /// The stream that stored it.
        found: String,
    },
    /// The table does not exist, or lacks a column the sink writes.
    #[error("table `{table}`: {problem}")]
    Table {
        /// The table.
        table: String,
        /// What is wrong with it.
        problem: TableProblem,
    },
    /// The server keeps no prepared transactions.
    #[error(
        "{url}: max_prepared_transactions is 0, so the server cannot prepare transactions for \
         two-phase commit; set max_prepared_transactions (postgresql.conf) above the sink's \
         parallelism and restart the server, or use `mode = \"upsert\"`"
    )]
    NoPreparedTransactions {
        /// The server.
        url: String,
    },
    /// A transaction id would exceed PostgreSQL's limit.
    #[error(
        "its transaction ids would be {len} bytes, above PostgreSQL's {max}: shorten the operator id"
    )]
    TransactionIdTooLong {
        /// Their length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A record's key or value is not UTF-8, for a text column.
    #[error("a record's {column} is not UTF-8, and column `{column}` holds text: make it bytea")]
    NotText {
        /// `key` or `value`.
        column: &'static str,
    },
    /// A batch outgrew its 32-bit offsets.
    #[error("{0}")]
    Batch(String),
    /// More buffered between two checkpoints than a sink holds.
    #[error(
        "{bytes} bytes written since the last checkpoint, above the {max} a sink buffers: \
         checkpoint more often"
    )]
    Buffer {
        /// Bytes buffered.
        bytes: u64,
        /// The limit.
        max: u64,
    },
    /// Its state could not be read.
    #[error(transparent)]
    State(#[from] StateError),
    /// The NATS server or client failed.
    #[error("{doing}: {reason}")]
    Nats {
        /// What the connector was doing.
        doing: &'static str,
        /// Why it failed.
        reason: Chain,
    },
    /// The Kafka broker or client failed.
    #[error("{doing}: {reason}")]
    Kafka {
        /// What the connector was doing.
        doing: &'static str,
        /// Why it failed.
        reason: Chain,
    },
    /// The PostgreSQL server or client failed.
    #[error("{doing}: {reason}")]
    Postgres {
        /// What the connector was doing.
        doing: &'static str,
        /// Why it failed.
        reason: Chain,
    },
}

/// What is wrong with a PostgreSQL sink's table.
#[derive(Debug, thiserror::Error)]
pub enum TableProblem {
    /// It does not exist.
    #[error("does not exist")]
    Missing,
    /// A column the sink writes is missing.
    #[error("the sink writes columns key, value and ts: {0}")]
    Columns(Chain),
    /// A column is of a type the sink does not write.
    #[error("column `{column}` is {found}: the sink writes {takes}")]
    Type {
        /// `key`, `value` or `ts`.
        column: &'static str,
        /// Its type.
        found: String,
        /// The types the sink writes into it.
        takes: &'static str,
    },
    /// Upsert mode, and `key` is not unique.
    #[error("upsert mode needs a unique index or primary key on column `key`")]
    NoUniqueKey,
}

/// An error with its sources, displayed as one line: `error: source: source ...` (a client
/// library's top error often says only "db error", its source what the server said).
pub struct Chain(pub Box<dyn std::error::Error + Send + Sync>);

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(error) = source {
            write!(f, ": {error}")?;
            source = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Chain {
    /// `error`, as a chain.
    pub fn of(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Chain(Box::new(error))
    }
}

impl Cause {
    /// A NATS failure while `doing`.
    pub fn nats(doing: &'static str) -> impl Fn(async_nats::Error) -> Cause {
        move |error| Cause::Nats {
            doing,
            reason: Chain(error),
        }
    }

    /// A PostgreSQL failure while `doing`.
    pub fn postgres(doing: &'static str) -> impl Fn(tokio_postgres::Error) -> Cause {
        move |error| Cause::Postgres {
            doing,
            reason: Chain::of(error),
        }
    }
}

/// Connects with up to [`CONNECT_ATTEMPTS_MAX`] attempts, [`CONNECT_BACKOFF_MS`] apart and
/// doubling, each bounded by [`CONNECT_TIMEOUT_MS`]; the error names `url` and the last
/// attempt's failure. `attempt` must not report secrets in its errors.
pub async fn connect_with_backoff<T, E, F>(
    url: &str,
    mut attempt: impl FnMut() -> F,
) -> Result<T, Cause>
where
    F: std::future::Future<Output = Result<T, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut backoff = Duration::from_millis(CONNECT_BACKOFF_MS);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let timeout = Duration::from_millis(CONNECT_TIMEOUT_MS);
        let error: Box<dyn std::error::Error + Send + Sync> =
            match tokio::time::timeout(timeout, attempt()).await {
                Ok(Ok(connected)) => return Ok(connected),
                Ok(Err(error)) => error.into(),
                Err(elapsed) => Box::new(elapsed),
            };
        if attempts == CONNECT_ATTEMPTS_MAX {
            return Err(Cause::Connect {
                url: url.to_owned(),
                attempts,
                reason: Chain(error),
            });
        }
        tracing::warn!(%url, attempts, "cannot connect, trying again: {}", Chain(error));
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
}

impl Connector {
    /// Connects `setup`'s subtask to its server and checks what it needs there (the stream,
    /// the table, the server's settings); reads and changes nothing else.
    pub async fn open(setup: Setup<'_>) -> Result<Connector, ConnectorError> {
        let subtask = setup.subtask.clone();
        let opened = match setup.config {
            ConnectorConfig::NatsSource(config) => {
                let source = nats::source::Source::open(&setup, config).await;
                source.map(|s| Body::NatsSource(Box::new(s)))
            }
            ConnectorConfig::NatsSink(config) => {
                let sink = nats::sink::Sink::open(&setup, config).await;
                sink.map(|s| Body::NatsSink(Box::new(s)))
            }
            ConnectorConfig::PostgresSink(config) => {
                let sink = postgres::Sink::open(&setup, config).await;
                sink.map(|s| Body::Postgres(Box::new(s)))
            }
            ConnectorConfig::KafkaSource(config) => {
                let source = kafka::source::Source::open(&setup, config).await;
                source.map(|s| Body::KafkaSource(Box::new(s)))
            }
            ConnectorConfig::KafkaSink(config) => {
                let sink = kafka::sink::Sink::open(&setup, config).await;
                sink.map(|s| Body::KafkaSink(Box::new(s)))
            }
            ConnectorConfig::Capture(captured) => Ok(Body::Capture(capture::Sink::new(
                setup.subtask.index,
                captured,
            ))),
        };
        match opened {
            Ok(body) => Ok(Connector { subtask, body }),
            Err(cause) => Err(ConnectorError {
                subtask,
                connector: name_of(setup.config),
                call: "init",
                cause: Box::new(cause),
            }),
        }
    }

    /// The subtask it serves.
    pub fn subtask(&self) -> &SubtaskId {
        &self.subtask
    }

    fn name(&self) -> &'static str {
        match &self.body {
            Body::NatsSource(_) => nats::source::NAME,
            Body::NatsSink(_) => nats::sink::NAME,
            Body::Postgres(_) => postgres::NAME,
            Body::KafkaSource(_) => kafka::source::NAME,
            Body::KafkaSink(_) => kafka::sink::NAME,
            Body::Capture(_) => capture::NAME,
        }
    }

    fn failed(&self, call: &'static str) -> impl FnOnce(Cause) -> ConnectorError + '_ {
        move |cause| ConnectorError {
            subtask: self.subtask.clone(),
            connector: self.name(),
            call,
            cause: Box::new(cause),
        }
    }

    /// Its name, state format version and rescale rule (union; the runtime hands a connector
    /// every old state at the same parallelism too: [`crate::snapshot::Rescale::Broadcast`]).
    pub fn describe(&self) -> ModuleInfo {
        let version = match &self.body {
            Body::NatsSource(_) => nats::source::STATE_VERSION,
            Body::NatsSink(_) => nats::sink::STATE_VERSION,
            Body::Postgres(_) => postgres::STATE_VERSION,
            Body::KafkaSource(_) => kafka::source::STATE_VERSION,
            Body::KafkaSink(_) => kafka::sink::STATE_VERSION,
            Body::Capture(_) => capture::STATE_VERSION,
        };
        ModuleInfo {
            name: self.name().to_owned(),
            version: version.to_string(),
            rescale: Rescale::Union,
        }
    }

    /// Its position for checkpoint `checkpoint`, as operator state.
    pub fn snapshot(&mut self, checkpoint: u64) -> Result<Snapshot, ConnectorError> {
        let operator_state = match &mut self.body {
            Body::NatsSource(source) => source.snapshot(),
            Body::NatsSink(sink) => sink.snapshot(checkpoint),
            Body::Postgres(sink) => sink.snapshot(checkpoint),
            Body::KafkaSource(source) => source.snapshot(),
            Body::KafkaSink(sink) => sink.snapshot(checkpoint),
            Body::Capture(_) => Vec::new(),
        };
        Ok(Snapshot {
            operator_state,
            key_groups: Vec::new(),
        })
    }

    /// Loads the position `state` holds (every old subtask's, after a parallelism change),
    /// refusing state another module or connector wrote. Touches nothing outside.
    pub fn restore(
        &mut self,
        state: &RestoredRef<'_>,
        origin: &StateOrigin,
    ) -> Result<(), ConnectorError> {
        let name = self.name();
        // A capture stands in for any sink, and leaves its state alone.
        if let Body::Capture(_) = self.body {
            return Ok(());
        }
        if origin.module_name != name || !origin.module_sha256.is_empty() {
            let foreign = StateError::Foreign {
                found: origin.module_name.clone(),
                version: origin.module_version.clone(),
                expected: name,
            };
            return Err(self.failed("restore")(foreign.into()));
        }
        let states = &state.operator_states;
        let restored = match &mut self.body {
            Body::NatsSource(source) => source.restore(states),
            Body::NatsSink(sink) => sink.restore(states),
            Body::Postgres(sink) => sink.restore(states),
            Body::KafkaSource(source) => source.restore(states),
            Body::KafkaSink(sink) => sink.restore(states),
            Body::Capture(_) => Ok(()),
        };
        restored.map_err(|e| self.failed("restore")(e.into()))
    }

    /// Sources: at most `records_max` records, or the end.
    pub async fn poll(&mut self, records_max: u32) -> Result<PollResult, ConnectorError> {
        let polled = match &mut self.body {
            Body::NatsSource(source) => source.poll(records_max).await,
            Body::KafkaSource(source) => source.poll(records_max).await,
            _ => unreachable!("`poll` called on a sink connector"),
        };
        polled.map_err(self.failed("poll-batch"))
    }

    /// Sinks: takes a batch into the open transaction.
    pub async fn write(&mut self, batch: &Batch) -> Result<(), ConnectorError> {
        let written = match &mut self.body {
            Body::NatsSink(sink) => sink.write(batch),
            Body::Postgres(sink) => sink.write(batch).await,
            Body::KafkaSink(sink) => sink.write(batch),
            Body::NatsSource(_) | Body::KafkaSource(_) => {
                unreachable!("`write-batch` called on a source connector")
            }
            Body::Capture(sink) => {
                sink.write(batch);
                Ok(())
            }
        };
        written.map_err(self.failed("write-batch"))
    }

    /// Sinks: makes the open transaction checkpoint `checkpoint`'s, durable and invisible.
    pub async fn prepare_commit(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        let prepared = match &mut self.body {
            Body::NatsSink(sink) => {
                sink.prepare_commit(checkpoint);
                Ok(())
            }
            Body::Postgres(sink) => sink.prepare_commit(checkpoint).await,
            Body::KafkaSink(sink) => {
                sink.prepare_commit(checkpoint);
                Ok(())
            }
            Body::NatsSource(_) | Body::KafkaSource(_) => {
                unreachable!("`prepare-commit` called on a source connector")
            }
            Body::Capture(_) => Ok(()),
        };
        prepared.map_err(self.failed("prepare-commit"))
    }

    /// Sinks: makes the transactions of `checkpoint` and earlier visible.
    pub async fn commit(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        let committed = match &mut self.body {
            Body::NatsSink(sink) => sink.commit(checkpoint).await,
            Body::Postgres(sink) => sink.commit(checkpoint).await,
            Body::KafkaSink(sink) => sink.commit(checkpoint).await,
            Body::NatsSource(_) | Body::KafkaSource(_) => {
                unreachable!("`commit` called on a source connector")
            }
            Body::Capture(_) => Ok(()),
        };
        committed.map_err(self.failed("commit"))
    }

    /// Sinks: publishes what the restored checkpoint `checkpoint` prepared, and discards what
    /// was prepared after it.
    pub async fn recover(&mut self, checkpoint: u64) -> Result<(), ConnectorError> {
        let recovered = match &mut self.body {
            Body::NatsSink(sink) => sink.recover().await,
            Body::Postgres(sink) => sink.recover(checkpoint).await,
            Body::KafkaSink(sink) => sink.recover().await,
            Body::NatsSource(_) | Body::KafkaSource(_) => {
                unreachable!("`recover` called on a source connector")
            }
            Body::Capture(_) => Ok(()),
        };
        recovered.map_err(self.failed("recover"))
    }
}

/// The name a connector's configuration runs as (`jobhost:nats-source`, ...): recorded as its
/// module name in every point.
pub fn name_of(config: &ConnectorConfig) -> &'static str {
    match config {
        ConnectorConfig::NatsSource(_) => nats::source::NAME,
        ConnectorConfig::NatsSink(_) => nats::sink::NAME,
        ConnectorConfig::PostgresSink(_) => postgres::NAME,
        ConnectorConfig::KafkaSource(_) => kafka::source::NAME,
        ConnectorConfig::KafkaSink(_) => kafka::sink::NAME,
        ConnectorConfig::Capture(_) => capture::NAME,
    }
}

/// Which old subtasks' work a new subtask `index` of `parallelism` takes over after a restore:
/// old subtask `j` goes to `j % parallelism`, so that exactly one new subtask resolves each.
pub fn owns_old(index: u32, parallelism: u32, old: u32) -> bool {
    old % parallelism == index
}
