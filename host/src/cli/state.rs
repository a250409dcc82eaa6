//! `host state read|write|bootstrap|repartition`: an operator's state, offline
//! ([`host::points::state`]).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;

use host::ids::{OperatorId, SavepointId};
use host::points::savepoint::{self, RestorePoint};
use host::points::state::{self, Bootstrap, Edit, Edited, Format, ReadRequest};
use host::store::{Point, Store};

/// `host state`'s commands.
#[derive(Debug, Subcommand)]
pub(super) enum StateCommand {
    /// Print every key and value of an operator's keyed state (its key groups' chains
    /// resolved), and its operator state, decoded from the portable envelope: JSON lines, or
    /// a Parquet file for DuckDB or pandas.
    Read(ReadArgs),
    /// Write a new savepoint: POINT with keys of one operator upserted or deleted, every
    /// segment shared with POINT (which is left as it is).
    Write(WriteArgs),
    /// Write a savepoint to start a job with one operator's keyed state loaded from data.
    Bootstrap(BootstrapArgs),
    /// Write a new savepoint: POINT with its keyed state split into another number of key
    /// groups (max_parallelism).
    Repartition(RepartitionArgs),
}

/// `host state read`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct ReadArgs {
    /// A savepoint id, folder, job id or JOB_ID:N.
    point: String,
    /// The operator.
    #[arg(long, value_name = "ID")]
    operator: OperatorId,
    /// What the rows are written as.
    #[arg(long, value_enum, default_value = "jsonl")]
    format: FormatArg,
    /// Only this key (its UTF-8 bytes).
    #[arg(long, value_name = "K")]
    key: Option<String>,
    /// Only this key group.
    #[arg(long, value_name = "G")]
    key_group: Option<u32>,
    /// Write the rows into this file (replaced once complete) [default: standard output].
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum FormatArg {
    /// One JSON object a line.
    Jsonl,
    /// A Parquet file (needs --out).
    Parquet,
}

/// `host state write`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct WriteArgs {
    /// A savepoint id, folder, job id or JOB_ID:N.
    point: String,
    /// The operator.
    #[arg(long, value_name = "ID")]
    operator: OperatorId,
    /// Rows to upsert: JSON lines {"key": …, "value": …}, as `host state read` prints them.
    #[arg(long, value_name = "FILE.jsonl")]
    upsert: Option<PathBuf>,
    /// Keys to delete: JSON lines {"key": …}.
    #[arg(long, value_name = "FILE.jsonl")]
    delete: Option<PathBuf>,
    /// The new savepoint's id.
    #[arg(long, value_name = "NEW")]
    to: SavepointId,
}

/// `host state bootstrap`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct BootstrapArgs {
    /// The job file the savepoint is for.
    job_file: PathBuf,
    /// The operator whose state is loaded.
    #[arg(long, value_name = "ID")]
    operator: OperatorId,
    /// The rows: JSON lines {"key": …, "value": …}.
    #[arg(long, value_name = "FILE.jsonl")]
    from: PathBuf,
    /// The state's format name, as the operator's module writes it (e.g. `word-count`).
    #[arg(long, value_name = "NAME")]
    state_format: String,
    /// The state's version, as the operator's module writes it.
    #[arg(long, value_name = "N")]
    state_version: u32,
    /// The new savepoint's id.
    #[arg(long, value_name = "NEW")]
    to: SavepointId,
}

/// `host state repartition`'s flags.
#[derive(Debug, clap::Args)]
pub(super) struct RepartitionArgs {
    /// A savepoint id, folder, job id or JOB_ID:N.
    point: String,
    /// The new number of key groups.
    #[arg(long, value_name = "M")]
    max_parallelism: u32,
    /// The new savepoint's id.
    #[arg(long, value_name = "NEW")]
    to: SavepointId,
}

impl StateCommand {
    /// Whether the command writes to the state folder.
    pub(super) fn writes(&self) -> bool {
        !matches!(self, StateCommand::Read(_))
    }
}

/// Runs a `host state` command.
pub(super) fn run(store: &Store, command: StateCommand) -> anyhow::Result<ExitCode> {
    match command {
        StateCommand::Read(args) => read(store, args),
        StateCommand::Write(args) => {
            let (point, shown) = point(store, &args.point)?;
            let edit = Edit {
                operator: args.operator,
                upserts: args.upsert,
                deletions: args.delete,
                to: args.to,
            };
            let edited = state::write(store, &point, &shown, &edit)?;
            let what = format!(
                "upserted {} and deleted {} key(s) in {} key group(s) of operator `{}`",
                edited.upserted, edited.deleted, edited.groups, edit.operator
            );
            report(store, &edit.to, &edited, &what, &shown)
        }
        StateCommand::Bootstrap(args) => {
            let request = Bootstrap {
                job_file: args.job_file,
                operator: args.operator,
                rows: args.from,
                format: args.state_format,
                version: args.state_version,
                to: args.to,
            };
            let edited = state::bootstrap(store, &request)?;
            let what = format!(
                "loaded {} key(s) in {} key group(s) of operator `{}`",
                edited.upserted, edited.groups, request.operator
            );
            report(
                store,
                &request.to,
                &edited,
                &what,
                &request.rows.display().to_string(),
            )
        }
        StateCommand::Repartition(args) => {
            let (point, shown) = point(store, &args.point)?;
            let edited = state::repartition(store, &point, &shown, args.max_parallelism, &args.to)?;
            let what = format!(
                "placed {} key(s) in {} of {} key groups (was {})",
                edited.upserted,
                edited.groups,
                args.max_parallelism,
                point.metadata.max_parallelism
            );
            report(store, &args.to, &edited, &what, &shown)
        }
    }
}

/// The point `name` names, read and its `_metadata` verified, and how to show it.
fn point(store: &Store, name: &str) -> anyhow::Result<(Point, String)> {
    let parsed = RestorePoint::parse(name).map_err(anyhow::Error::msg)?;
    let dir = savepoint::resolve(store, &parsed)?;
    let shown = store.display(&dir);
    Ok((store.read_point(&dir)?, shown))
}

/// Prints a new savepoint's id and folder (as `host save` does), then what it holds.
fn report(
    store: &Store,
    id: &SavepointId,
    edited: &Edited,
    what: &str,
    from: &str,
) -> anyhow::Result<ExitCode> {
    let written = &edited.written;
    println!("{id}");
    println!("{}", store.display(&edited.dir));
    println!(
        "{what} (state `{}` v{}) from {from}: {} file(s) written, {} segment(s) shared with it",
        edited.format.0, edited.format.1, written.new_files, written.shared_files
    );
    Ok(ExitCode::SUCCESS)
}

/// `host state read`: the rows to standard output, or into `--out`, written beside it and
/// renamed into place once complete (a refused or failed read leaves no file).
fn read(store: &Store, args: ReadArgs) -> anyhow::Result<ExitCode> {
    let format = match args.format {
        FormatArg::Jsonl => Format::Jsonl,
        FormatArg::Parquet => Format::Parquet,
    };
    anyhow::ensure!(
        format == Format::Jsonl || args.out.is_some(),
        "Parquet goes into a file: pass --out FILE.parquet"
    );
    let (point, shown) = point(store, &args.point)?;
    let request = ReadRequest {
        operator: args.operator,
        key: args.key.map(String::into_bytes),
        key_group: args.key_group,
        format,
    };
    let summary = match &args.out {
        None => state::read(store, &point, &shown, &request, std::io::stdout())?,
        Some(out) => {
            let parent = parent_of(out);
            let mut file = tempfile::NamedTempFile::new_in(parent)
                .with_context(|| format!("{}: cannot write beside it", out.display()))?;
            let summary = state::read(store, &point, &shown, &request, file.as_file_mut())?;
            file.as_file_mut().flush()?;
            file.persist(out)
                .with_context(|| format!("{}: cannot write it", out.display()))?;
            summary
        }
    };
    let formats: Vec<String> = summary
        .formats
        .iter()
        .map(|(format, version)| format!("`{format}` v{version}"))
        .collect();
    eprintln!(
        "read {} key(s) in {} key group(s) (state {}) and {} operator state(s) of operator `{}` \
         from {shown}",
        summary.keys,
        summary.groups,
        if formats.is_empty() {
            "none".to_owned()
        } else {
            formats.join(", ")
        },
        summary.operator_states,
        request.operator,
    );
    Ok(ExitCode::SUCCESS)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}
