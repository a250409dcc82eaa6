//! The PostgreSQL sink, in one of two modes.
//!
//! Two-phase (the default): each subtask writes the rows of a checkpoint into one transaction
//! as they arrive (one `COPY ... BINARY` per transaction, streaming batch after batch, ended
//! before the transaction is prepared), prepares it at the checkpoint's barrier
//! (`PREPARE TRANSACTION` with a global id naming the sink, the subtask, the job and the
//! checkpoint: [`transactions`]) and commits it (`COMMIT PREPARED`) once the checkpoint is
//! complete. The ids it prepared and has not committed are its state. `recover` after a
//! restore, a fresh sink's first write, and every `commit` reconcile the server with that
//! state ([`transactions::reconcile`]): what a completed checkpoint prepared is committed, and
//! every other transaction of the sink's share left prepared by a run that is gone (crashed
//! between `PREPARE` and the checkpoint's completion) is rolled back. Refused at start when the
//! server keeps no prepared transactions (`max_prepared_transactions = 0`).
//!
//! Upsert (`mode = "upsert"`, for a table whose `key` is unique): the rows of a checkpoint are
//! kept (the last per key) as its state, and written once it completes with `INSERT ... ON
//! CONFLICT (key) DO UPDATE` in one ordinary transaction; a commit repeated after a crash
//! writes the same values again. Its inputs must be key-by edges, so that one subtask applies
//! each key's updates, in order.
//!
//! Columns are mapped by [`rows`]. Two connections per subtask: one holds the open
//! transaction, the other commits and rolls back prepared ones (which cannot happen inside a
//! transaction).

mod rows;
pub mod transactions;

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::task::JoinHandle;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::config::{PostgresMode, PostgresSink};
use super::state::{self, StateError};
use super::{Cause, Setup, TableProblem, connect_with_backoff, owns_old};
use crate::engine::bindings::Batch;
use crate::runtime::partition::columns;
use rows::Columns;
use transactions::{GID_BYTES_MAX, Gid, Share};

/// Its name, as points record it.
pub const NAME: &str = "jobhost:postgres-sink";
/// What its sessions' `application_name` starts with (then the job).
const APPLICATION: &str = "jobhost";
/// Its state format ([`State`]).
pub const STATE_VERSION: u8 = 1;
/// Most bytes of rows an upsert subtask keeps between two checkpoints.
pub const UPSERT_BYTES_MAX: u64 = 256 << 20;

/// The rows an upsert sink kept for a checkpoint: key, value, timestamp.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upserts {
    /// The checkpoint.
    pub checkpoint: u64,
    /// The subtask that kept them.
    pub subtask: u32,
    /// The rows, the last per key.
    pub rows: Vec<(ByteBuf, ByteBuf, i64)>,
}

/// A subtask's state: what it prepared or kept and has not yet made visible.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Transactions prepared and not committed (two-phase).
    pub prepared: Vec<Gid>,
    /// Rows kept and not written (upsert).
    pub upserts: Vec<Upserts>,
}

/// One subtask of the sink.
pub struct Sink {
    url: String,
    table: String,
    mode: PostgresMode,
    columns: Columns,
    /// Holds the open transaction.
    writer: Client,
    /// Commits and rolls back prepared transactions; writes upserts.
    control: Client,
    connections: [JoinHandle<()>; 2],
    state: State,
    /// What its transactions' ids start with.
    prefix: String,
    job: String,
    index: u32,
    parallelism: u32,
    /// Whether a transaction is open on `writer` (two-phase).
    open: bool,
    /// The `COPY` into the open transaction, once a batch came: one per checkpoint, ended
    /// before the transaction is prepared, so that rows stream with no round trip per batch.
    copying: Option<Pin<Box<BinaryCopyInWriter>>>,
    /// Upsert rows since the last checkpoint, by key, and their bytes.
    kept: BTreeMap<ByteBuf, (ByteBuf, i64)>,
    kept_bytes: u64,
    /// Whether the server was reconciled with the state (`recover`, or the first write of a
    /// sink with none).
    reconciled: bool,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.connections.iter().for_each(JoinHandle::abort);
    }
}

/// `table`, quoted: each part of a `schema.name` (validated as plain names).
fn quoted(table: &str) -> String {
    let parts: Vec<String> = table.split('.').map(|p| format!("\"{p}\"")).collect();
    parts.join(".")
}

impl Sink {
    /// Connects twice, checks the server's settings and the table's columns.
    pub(in crate::connectors) async fn open(
        setup: &Setup<'_>,
        config: &PostgresSink,
    ) -> Result<Sink, Cause> {
        let mut pg =
            tokio_postgres::Config::from_str(&config.url).expect("validated with the job file");
        // Names the job: a sink leaves the prepared transactions of a job still connected alone.
        pg.application_name(format!("{APPLICATION} {}", setup.job));
        if let Some(password) = setup.secret {
            pg.password(password.expose());
        }
        let (writer, first) = connect(&pg, &config.url).await?;
        let (control, second) = connect(&pg, &config.url).await?;
        let columns = table_columns(&control, config).await?;
        let subtask = setup.subtask;
        let sink = Sink {
            url: config.url.clone(),
            table: config.table.clone(),
            mode: config.mode,
            columns,
            writer,
            control,
            connections: [first, second],
            state: State::default(),
            prefix: config
                .transaction_prefix
                .clone()
                .unwrap_or_else(|| format!("{}.{}", subtask.operator, config.table)),
            job: setup.job.to_string(),
            index: subtask.index,
            parallelism: setup.parallelism,
            open: false,
            copying: None,
            kept: BTreeMap::new(),
            kept_bytes: 0,
            reconciled: false,
        };
        if sink.mode == PostgresMode::TwoPhase {
            sink.check_prepared_transactions().await?;
        }
        sink.check_gid_length()?;
        Ok(sink)
    }

    /// Refuses a server that keeps no prepared transactions.
    async fn check_prepared_transactions(&self) -> Result<(), Cause> {
        let setting = self
            .control
            .query_one("SHOW max_prepared_transactions", &[]);
        let setting = setting
            .await
            .map_err(Cause::postgres("reading max_prepared_transactions"))?;
        let value: String = setting.get(0);
        match value.trim().parse::<u64>() {
            Ok(0) => Err(Cause::NoPreparedTransactions {
                url: self.url.clone(),
            }),
            _ => Ok(()),
        }
    }

    /// Refuses ids PostgreSQL cannot take (a long prefix: operator id and table).
    fn check_gid_length(&self) -> Result<(), Cause> {
        let longest = Gid {
            checkpoint: u64::MAX,
            subtask: self.index,
            prefix: self.prefix.clone(),
            job: self.job.clone(),
        };
        let len = longest.id().len();
        match len <= GID_BYTES_MAX {
            true => Ok(()),
            false => Err(Cause::TransactionIdTooLong {
                len,
                max: GID_BYTES_MAX,
            }),
        }
    }

    /// Its state for a checkpoint, encoded.
    pub(in crate::connectors) fn snapshot(&self, _checkpoint: u64) -> Vec<u8> {
        state::encode(STATE_VERSION, &self.state)
    }

    /// Takes over what the old subtasks it succeeds prepared or kept (old `j` for new
    /// `j % parallelism`). Touches nothing on the server.
    pub(in crate::connectors) fn restore(&mut self, states: &[&[u8]]) -> Result<(), StateError> {
        for bytes in states {
            let old: State = state::decode(STATE_VERSION, bytes)?;
            let owned = |subtask: u32| owns_old(self.index, self.parallelism, subtask);
            let prepared = old.prepared.into_iter().filter(|g| owned(g.subtask));
            self.state.prepared.extend(prepared);
            let upserts = old.upserts.into_iter().filter(|u| owned(u.subtask));
            self.state.upserts.extend(upserts);
        }
        self.state.prepared.sort();
        self.state
            .upserts
            .sort_by_key(|u| (u.checkpoint, u.subtask));
        Ok(())
    }

    /// Two-phase: copies the batch into the open transaction (opening one). Upsert: keeps the
    /// last row per key.
    pub(in crate::connectors) async fn write(&mut self, batch: &Batch) -> Result<(), Cause> {
        if !self.reconciled {
            // A sink without state: what runs of it that are gone left prepared for checkpoints
            // that never completed is rolled back before it writes.
            self.reconcile(&BTreeSet::new()).await?;
        }
        match self.mode {
            PostgresMode::TwoPhase => self.copy(batch).await,
            PostgresMode::Upsert => self.keep(batch),
        }
    }

    async fn copy(&mut self, batch: &Batch) -> Result<(), Cause> {
        let mut writer = match self.copying.take() {
            Some(writer) => writer,
            None => self.start_copy().await?,
        };
        // On an error the writer is dropped, which aborts the `COPY` and so the transaction.
        for record in jobhost_batch::Records::of_checked(columns(batch)) {
            let row = self
                .columns
                .row(record.key, record.value, record.timestamp)?;
            let written = writer.as_mut().write(&row.params()).await;
            written.map_err(Cause::postgres("copying rows"))?;
        }
        self.copying = Some(writer);
        Ok(())
    }

    /// Opens a transaction, if none is, and a `COPY` into the table in it.
    async fn start_copy(&mut self) -> Result<Pin<Box<BinaryCopyInWriter>>, Cause> {
        if !self.open {
            let begun = self.writer.batch_execute("BEGIN").await;
            begun.map_err(Cause::postgres("beginning a transaction"))?;
            self.open = true;
        }
        let statement = format!(
            "COPY {} (key, value, ts) FROM STDIN BINARY",
            quoted(&self.table)
        );
        let sink = self.writer.copy_in(&statement).await;
        let sink = sink.map_err(Cause::postgres("copying rows"))?;
        Ok(Box::pin(BinaryCopyInWriter::new(sink, &self.columns.types)))
    }

    fn keep(&mut self, batch: &Batch) -> Result<(), Cause> {
        for record in jobhost_batch::Records::of_checked(columns(batch)) {
            self.columns
                .row(record.key, record.value, record.timestamp)?;
            self.kept_bytes += (record.key.len() + record.value.len()) as u64;
            let value = (ByteBuf::from(record.value), record.timestamp);
            self.kept.insert(ByteBuf::from(record.key), value);
        }
        if self.kept_bytes > UPSERT_BYTES_MAX {
            return Err(Cause::Buffer {
                bytes: self.kept_bytes,
                max: UPSERT_BYTES_MAX,
            });
        }
        Ok(())
    }

    /// Two-phase: prepares the open transaction as checkpoint `checkpoint`'s. Upsert: keeps
    /// the rows since the last checkpoint as its.
    pub(in crate::connectors) async fn prepare_commit(
        &mut self,
        checkpoint: u64,
    ) -> Result<(), Cause> {
        if !self.kept.is_empty() {
            let rows = std::mem::take(&mut self.kept).into_iter();
            self.state.upserts.push(Upserts {
                checkpoint,
                subtask: self.index,
                rows: rows.map(|(key, (value, ts))| (key, value, ts)).collect(),
            });
            self.kept_bytes = 0;
        }
        if !self.open {
            return Ok(());
        }
        let gid = Gid {
            checkpoint,
            subtask: self.index,
            prefix: self.prefix.clone(),
            job: self.job.clone(),
        };
        if let Some(mut writer) = self.copying.take() {
            let finished = writer.as_mut().finish().await;
            finished.map_err(Cause::postgres("copying rows"))?;
        }
        let prepare = format!("PREPARE TRANSACTION '{}'", gid.id());
        let prepared = self.writer.batch_execute(&prepare).await;
        // Prepared or not, the transaction is no longer open (a failed PREPARE rolls back).
        self.open = false;
        prepared.map_err(Cause::postgres("preparing the transaction"))?;
        self.state.prepared.push(gid);
        Ok(())
    }

    /// Makes what checkpoint `checkpoint` and earlier ones prepared or kept visible, and rolls
    /// back any transaction of its share left prepared by an earlier run.
    pub(in crate::connectors) async fn commit(&mut self, checkpoint: u64) -> Result<(), Cause> {
        let due: BTreeSet<Gid> = self
            .state
            .prepared
            .iter()
            .filter(|g| g.checkpoint <= checkpoint)
            .cloned()
            .collect();
        self.reconcile(&due).await?;
        self.state.prepared.retain(|g| g.checkpoint > checkpoint);
        self.upsert_through(checkpoint).await
    }

    /// Reconciles the server with the restored checkpoint: commits what it prepared, rolls
    /// back what was prepared after it, writes the upserts it kept.
    pub(in crate::connectors) async fn recover(&mut self, _checkpoint: u64) -> Result<(), Cause> {
        let listed: BTreeSet<Gid> = self.state.prepared.iter().cloned().collect();
        self.reconcile(&listed).await?;
        self.state.prepared.clear();
        self.upsert_through(u64::MAX).await
    }

    /// Commits the transactions the server holds that are `listed`; rolls back those of its
    /// share neither listed nor still pending in its state, prepared by its own job or by one
    /// no longer connected.
    async fn reconcile(&mut self, listed: &BTreeSet<Gid>) -> Result<(), Cause> {
        let on_server = self.prepared_on_server(listed).await?;
        let live = self.live_jobs().await?;
        let share = Share {
            prefix: &self.prefix,
            index: self.index,
            parallelism: self.parallelism,
            job: &self.job,
            live: &live,
        };
        let keep: BTreeSet<Gid> = self.state.prepared.iter().cloned().collect();
        let decision = transactions::reconcile(&on_server, share, listed, &keep);
        for gid in &decision.commit {
            let statement = format!("COMMIT PREPARED '{gid}'");
            let committed = self.control.batch_execute(&statement).await;
            committed.map_err(Cause::postgres("committing a prepared transaction"))?;
        }
        for gid in &decision.roll_back {
            tracing::info!(%gid, "rolling back a transaction prepared for a checkpoint that never completed");
            let statement = format!("ROLLBACK PREPARED '{gid}'");
            let rolled = self.control.batch_execute(&statement).await;
            rolled.map_err(Cause::postgres("rolling back a prepared transaction"))?;
        }
        self.reconciled = true;
        Ok(())
    }

    /// The global ids of this database's prepared transactions that are `listed` or of the
    /// sink's prefix.
    async fn prepared_on_server(&self, listed: &BTreeSet<Gid>) -> Result<Vec<String>, Cause> {
        let listed: Vec<String> = listed.iter().map(Gid::id).collect();
        let rows = self
            .control
            .query(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database() \
                 AND (starts_with(gid, $1) OR gid = ANY($2))",
                &[&Gid::start(&self.prefix), &listed],
            )
            .await;
        let rows = rows.map_err(Cause::postgres("listing prepared transactions"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The jobs with sessions on the server now (as their `application_name` names them).
    async fn live_jobs(&self) -> Result<BTreeSet<String>, Cause> {
        let rows = self
            .control
            .query(
                "SELECT DISTINCT substr(application_name, length($1) + 2) FROM pg_stat_activity \
                 WHERE starts_with(application_name, $1 || ' ')",
                &[&APPLICATION],
            )
            .await;
        let rows = rows.map_err(Cause::postgres("listing the jobs connected"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// Writes the upserts kept for checkpoint `checkpoint` and earlier, oldest first, each
    /// checkpoint's in one transaction.
    async fn upsert_through(&mut self, checkpoint: u64) -> Result<(), Cause> {
        let statement = format!(
            "INSERT INTO {} (key, value, ts) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, ts = EXCLUDED.ts",
            quoted(&self.table)
        );
        while self
            .state
            .upserts
            .first()
            .is_some_and(|u| u.checkpoint <= checkpoint)
        {
            let upserts = &self.state.upserts[0];
            let failed = Cause::postgres("upserting rows");
            let transaction = self.control.transaction().await.map_err(&failed)?;
            let statement = transaction.prepare(&statement).await.map_err(&failed)?;
            let mut rows = Vec::with_capacity(upserts.rows.len());
            for (key, value, ts) in &upserts.rows {
                rows.push(self.columns.row(key, value, *ts)?);
            }
            let params: Vec<_> = rows.iter().map(rows::Row::params).collect();
            let executed = params.iter().map(|p| transaction.execute(&statement, p));
            futures::future::try_join_all(executed)
                .await
                .map_err(&failed)?;
            transaction.commit().await.map_err(&failed)?;
            self.state.upserts.remove(0);
        }
        Ok(())
    }
}

/// A client connected to the server, its connection driven by a task of its own.
async fn connect(
    config: &tokio_postgres::Config,
    url: &str,
) -> Result<(Client, JoinHandle<()>), Cause> {
    let (client, connection) = connect_with_backoff(url, || config.connect(NoTls)).await?;
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!("a PostgreSQL connection ended: {error}");
        }
    });
    Ok((client, task))
}

/// The columns of the configured table, as the server reports them; or why the sink cannot
/// write it (missing, missing a column, a key that is not unique in upsert mode).
async fn table_columns(control: &Client, config: &PostgresSink) -> Result<Columns, Cause> {
    let table = quoted(&config.table);
    let statement = match config.mode {
        PostgresMode::TwoPhase => {
            format!("INSERT INTO {table} (key, value, ts) VALUES ($1, $2, $3)")
        }
        PostgresMode::Upsert => format!(
            "INSERT INTO {table} (key, value, ts) VALUES ($1, $2, $3) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
        ),
    };
    let problem = |problem: TableProblem| Cause::Table {
        table: config.table.clone(),
        problem,
    };
    match control.prepare(&statement).await {
        Ok(statement) => Columns::of(statement.params()).map_err(problem),
        Err(e) => match e.code() {
            Some(&SqlState::UNDEFINED_TABLE) => Err(problem(TableProblem::Missing)),
            Some(&SqlState::UNDEFINED_COLUMN) => {
                Err(problem(TableProblem::Columns(super::Chain::of(e))))
            }
            Some(&SqlState::INVALID_COLUMN_REFERENCE) => Err(problem(TableProblem::NoUniqueKey)),
            _ => Err(Cause::postgres("reading the table's columns")(e)),
        },
    }
}

/// What a person reads of a sink's state: the transactions it prepared, the upserts it kept.
pub fn describe_state(bytes: &[u8]) -> Result<String, StateError> {
    let state: State = state::decode(STATE_VERSION, bytes)?;
    let mut parts = Vec::new();
    if !state.prepared.is_empty() {
        let ids: Vec<String> = state.prepared.iter().map(Gid::id).collect();
        parts.push(format!("prepared, to commit: {}", ids.join(", ")));
    }
    for upserts in &state.upserts {
        parts.push(format!(
            "{} rows of checkpoint {} to upsert",
            upserts.rows.len(),
            upserts.checkpoint
        ));
    }
    if parts.is_empty() {
        parts.push("nothing pending".to_owned());
    }
    Ok(parts.join("; "))
}
