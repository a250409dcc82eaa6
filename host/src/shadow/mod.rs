//! `host shadow`: the old and the new job run from the same point on the same input, and their
//! outputs and state compared, before an upgrade; a shadow run changes nothing.
//!
//! How it changes nothing: every sink is replaced by a capture ([`crate::connectors::capture`])
//! that keeps its records in memory, every mount is read-only, the compiled-module cache is
//! read-only, and each run's checkpoints go to a state folder of its own in a temporary
//! folder, removed afterwards: the state folder, the point and the sinks' folders are left
//! byte for byte as they were. Its sources read from the point's positions. A source that
//! reads from a server (a NATS JetStream connector) is refused: that its reads leave the
//! server as it was is not checked here, so a shadow run does not make them.
//!
//! How both read the same input: the old job runs first, bounded by `--records` (per source
//! subtask) or `--for` (then its sources end) or until its sources end; what each source
//! subtask emitted is counted ([`crate::runtime::SourceBound`]), and the new job's source
//! subtasks emit exactly as many. Each run ends as a job whose sources ended does: with a
//! final checkpoint, every record processed and committed. The state compared is that
//! checkpoint's ([`diff`]).

pub mod diff;

use std::collections::BTreeMap;
use std::io::BufRead as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value as Json;

use crate::connectors::capture::Captured;
use crate::connectors::config::ConnectorConfig;
use crate::connectors::secret::Secrets;
use crate::engine::{Engine, Limits};
use crate::ids::{JobId, OperatorId, SubtaskId};
use crate::points::state::{self, StateError};
use crate::protected::{MountRefused, Protected};
use crate::runtime::{self, BuildError, JobFailure, JobRecord, Outcome, RestoreFrom, SourceBound};
use crate::store::{Store, StoreError};
use crate::topology::{Implementation, Plan, RestartStrategy, Role};
use diff::{SinkDiff, StateDiff};

/// One of the two jobs, prepared: its plan and the point's state, verified against it.
pub struct Side {
    /// The job, as people name it (its job file).
    pub name: String,
    /// Its plan.
    pub plan: Plan,
    /// What its points record (the scratch points a shadow run writes).
    pub record: JobRecord,
    /// The point's state, checked against the plan.
    pub restore: RestoreFrom,
    /// The folders no mount may reach.
    pub protected: Protected,
    /// Its connectors' secrets (none is used: sinks are captured, connector sources refused).
    pub secrets: Secrets,
}

/// How far the old job reads; the new one reads exactly as far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Limit {
    /// Records per source subtask, at most.
    pub records: Option<u64>,
    /// How long the old job's sources read, at most.
    pub duration: Option<Duration>,
}

/// Why a shadow run could not compare the two jobs.
#[derive(Debug, thiserror::Error)]
pub enum ShadowError {
    /// A source reads from a server.
    #[error(
        "{job}: operator `{operator}` is a {connector} source: a shadow run reads only sources \
         that read files (whose position is in the point), never a server"
    )]
    ConnectorSource {
        /// The job.
        job: String,
        /// The source.
        operator: OperatorId,
        /// Its connector.
        connector: &'static str,
    },
    /// The two jobs do not have the same sources, so they cannot read the same input.
    #[error(
        "the two jobs must have the same sources to read the same input: {old} has {}, {new} \
         has {}", shown(.old_sources), shown(.new_sources)
    )]
    SourcesDiffer {
        /// The old job.
        old: String,
        /// Its sources and their parallelism.
        old_sources: Vec<(OperatorId, u32)>,
        /// The new job.
        new: String,
        /// Its sources and their parallelism.
        new_sources: Vec<(OperatorId, u32)>,
    },
    /// A mount reaches the host's own folders.
    #[error("{job}: {refused}")]
    Mount {
        /// The job.
        job: String,
        /// The first mount refused.
        refused: MountRefused,
    },
    /// The scratch folder could not be made.
    #[error("cannot make a scratch folder for a shadow run: {0}")]
    Scratch(#[source] std::io::Error),
    /// The scratch state folder could not be used.
    #[error("{job}: its scratch state folder: {source}")]
    Store {
        /// The job.
        job: String,
        /// What failed.
        source: StoreError,
    },
    /// The job could not be built from the point.
    #[error("{job}: cannot start it from the point:\n  - {}", listed(.errors))]
    Build {
        /// The job.
        job: String,
        /// Every problem, each naming its operator.
        errors: Vec<BuildError>,
    },
    /// The job failed while it ran.
    #[error("{job} failed in the shadow run: {failure}")]
    Failed {
        /// The job.
        job: String,
        /// Why.
        failure: JobFailure,
    },
    /// The job finished without its final checkpoint.
    #[error("{job} finished its shadow run without a final checkpoint to compare")]
    NoFinalCheckpoint {
        /// The job.
        job: String,
    },
    /// The job's state after the run could not be read.
    #[error("{job}: its state after the run: {source}")]
    State {
        /// The job.
        job: String,
        /// Why.
        source: StateError,
    },
}

fn shown(sources: &[(OperatorId, u32)]) -> String {
    let shown: Vec<String> = sources
        .iter()
        .map(|(id, parallelism)| format!("`{id}` (parallelism {parallelism})"))
        .collect();
    match shown.is_empty() {
        true => "none".to_owned(),
        false => shown.join(", "),
    }
}

fn listed(errors: &[BuildError]) -> String {
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n  - ")
}

/// What a shadow run found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The old job.
    pub old: String,
    /// The new job.
    pub new: String,
    /// Records each source subtask emitted, in the old run and in the new.
    pub input: Vec<Read>,
    /// Each sink's records compared.
    pub sinks: Vec<SinkDiff>,
    /// Each keyed operator's state after the runs compared.
    pub states: Vec<StateDiff>,
    /// Operators whose state was not compared, and why (a state not in the portable envelope).
    pub not_compared: Vec<NotCompared>,
}

/// What one source subtask emitted in each run.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Read {
    /// The source subtask, `lines[0]`.
    pub subtask: String,
    /// Records it emitted in the old run.
    pub old: u64,
    /// Records it emitted in the new run.
    pub new: u64,
}

/// An operator whose state after the runs was not compared.
#[derive(Clone, Debug, serde::Serialize)]
pub struct NotCompared {
    /// The operator.
    pub operator: OperatorId,
    /// Why.
    pub reason: String,
}

impl Report {
    /// Whether the two jobs read the same, wrote the same and hold the same state.
    pub fn agrees(&self) -> bool {
        self.input.iter().all(|read| read.old == read.new)
            && self.sinks.iter().all(|s| s.keys_differing == 0)
            && self.states.iter().all(|s| s.keys_differing == 0)
    }
}

/// One job's run, ended: its scratch state folder (removed when this is dropped), its final
/// checkpoint and what its sinks took.
struct Ran {
    name: String,
    plan: Plan,
    store: Store,
    job: JobId,
    captured: BTreeMap<OperatorId, Captured>,
    _scratch: tempfile::TempDir,
}

/// Runs `old` as `limit` says, then `new` on exactly the same input, and compares them.
pub async fn run(
    engine: Arc<Engine>,
    old: Side,
    new: Side,
    limit: Limit,
) -> Result<Report, ShadowError> {
    for side in [&old, &new] {
        refuse_connector_sources(side)?;
    }
    same_sources(&old, &new)?;
    let old_bound = Arc::new(SourceBound::each(limit.records));
    let old = run_side(engine.clone(), old, &old_bound, limit.duration).await?;
    let emitted = old_bound.emitted();
    let new_bound = Arc::new(SourceBound::exactly(emitted.clone()));
    let new = run_side(engine, new, &new_bound, None).await?;
    let input = reads(&emitted, &new_bound.emitted());
    let (states, not_compared) = compare_states(&old, &new)?;
    Ok(Report {
        sinks: compare_sinks(&old, &new),
        old: old.name,
        new: new.name,
        input,
        states,
        not_compared,
    })
}

/// Refuses a job whose source is a connector.
fn refuse_connector_sources(side: &Side) -> Result<(), ShadowError> {
    let sources = side
        .plan
        .operators
        .iter()
        .filter(|op| op.role == Role::Source);
    for op in sources {
        if let Some(config) = op.connector() {
            return Err(ShadowError::ConnectorSource {
                job: side.name.clone(),
                operator: op.id.clone(),
                connector: crate::connectors::name_of(config),
            });
        }
    }
    Ok(())
}

/// Refuses two jobs whose sources are not the same operators at the same parallelism.
fn same_sources(old: &Side, new: &Side) -> Result<(), ShadowError> {
    let sources = |plan: &Plan| -> Vec<(OperatorId, u32)> {
        let sources = plan.operators.iter().filter(|op| op.role == Role::Source);
        sources.map(|op| (op.id.clone(), op.parallelism)).collect()
    };
    let (old_sources, new_sources) = (sources(&old.plan), sources(&new.plan));
    if old_sources == new_sources {
        return Ok(());
    }
    Err(ShadowError::SourcesDiffer {
        old: old.name.clone(),
        old_sources,
        new: new.name.clone(),
        new_sources,
    })
}

/// The plan a shadow run builds: every sink a capture (returned by id), every mount
/// read-only, no periodic checkpoint (only the final one), no restart.
fn shadow_plan(plan: &Plan) -> (Plan, BTreeMap<OperatorId, Captured>) {
    let mut plan = plan.clone();
    plan.checkpoint_interval_ms = 0;
    plan.restart = RestartStrategy::default();
    let mut captured = BTreeMap::new();
    for op in &mut plan.operators {
        if op.role == Role::Sink {
            let capture = Captured::default();
            captured.insert(op.id.clone(), capture.clone());
            op.implementation = Implementation::Connector(ConnectorConfig::Capture(capture));
            op.mounts.clear();
        }
        op.mounts
            .iter_mut()
            .for_each(|mount| mount.writable = false);
    }
    (plan, captured)
}

/// Runs one job from the point, its sources bounded by `bound` (and stopped after `duration`),
/// in a scratch state folder, until it finishes.
async fn run_side(
    engine: Arc<Engine>,
    side: Side,
    bound: &Arc<SourceBound>,
    duration: Option<Duration>,
) -> Result<Ran, ShadowError> {
    let name = side.name.clone();
    let (plan, captured) = shadow_plan(&side.plan);
    if let Some(refused) = side.protected.refusals(&plan).into_iter().next() {
        return Err(ShadowError::Mount { job: name, refused });
    }
    let (scratch, store) = scratch_store(&name)?;
    let job = JobId::generate();
    let spec = runtime::JobSpec {
        job: job.clone(),
        plan,
        record: side.record,
        restore: Some(side.restore),
        taking_over: false,
        limits: Limits::default(),
        protected: side.protected,
        secrets: side.secrets,
        remote: None,
        bound: Some(bound.clone()),
    };
    let built = runtime::build(engine, store.clone(), spec).await;
    let built = built.map_err(|errors| ShadowError::Build {
        job: name.clone(),
        errors,
    })?;
    tracing::info!(job = %name, "shadow run started");
    let handle = built.spawn();
    let stopper = duration.map(|duration| {
        let bound = bound.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            bound.stop();
        })
    });
    let outcome = handle.wait().await;
    if let Some(stopper) = stopper {
        stopper.abort();
    }
    match outcome {
        Outcome::Finished => Ok(Ran {
            name,
            plan: side.plan,
            store,
            job,
            captured,
            _scratch: scratch,
        }),
        Outcome::Failed(failure) => Err(ShadowError::Failed { job: name, failure }),
        Outcome::Stopped(_) => unreachable!("nothing asks a shadow run to stop"),
    }
}

/// A scratch state folder of its own (mode 0700, whatever the umask), removed when dropped,
/// for the run of job `name`.
fn scratch_store(name: &str) -> Result<(tempfile::TempDir, Store), ShadowError> {
    let scratch = tempfile::Builder::new()
        .prefix("host-shadow-")
        .tempdir()
        .map_err(ShadowError::Scratch)?;
    let own = std::os::unix::fs::PermissionsExt::from_mode(0o700);
    std::fs::set_permissions(scratch.path(), own).map_err(ShadowError::Scratch)?;
    let store = Store::open(scratch.path()).map_err(|source| ShadowError::Store {
        job: name.to_owned(),
        source,
    })?;
    Ok((scratch, store))
}

/// Each source subtask's records in both runs.
fn reads(old: &BTreeMap<SubtaskId, u64>, new: &BTreeMap<SubtaskId, u64>) -> Vec<Read> {
    let subtasks: std::collections::BTreeSet<&SubtaskId> = old.keys().chain(new.keys()).collect();
    subtasks
        .into_iter()
        .map(|subtask| Read {
            subtask: subtask.to_string(),
            old: old.get(subtask).copied().unwrap_or(0),
            new: new.get(subtask).copied().unwrap_or(0),
        })
        .collect()
}

/// Every sink of either job, its records compared (a sink only one job has took nothing in
/// the other).
fn compare_sinks(old: &Ran, new: &Ran) -> Vec<SinkDiff> {
    let ids: std::collections::BTreeSet<&OperatorId> =
        old.captured.keys().chain(new.captured.keys()).collect();
    let records = |ran: &Ran, id: &OperatorId| {
        ran.captured
            .get(id)
            .map(Captured::records)
            .unwrap_or_default()
    };
    ids.into_iter()
        .map(|id| diff::sink(id, &records(old, id), &records(new, id)))
        .collect()
}

/// The keyed state of every operator (role `operator`) both jobs have, compared; those whose
/// state the host cannot read (not in the portable envelope) are listed as not compared.
fn compare_states(old: &Ran, new: &Ran) -> Result<(Vec<StateDiff>, Vec<NotCompared>), ShadowError> {
    let (old_point, new_point) = (final_point(old)?, final_point(new)?);
    let (mut states, mut not_compared) = (Vec::new(), Vec::new());
    let operators = old
        .plan
        .operators
        .iter()
        .filter(|op| op.role == Role::Operator);
    for op in operators.filter(|op| new.plan.operator(&op.id).is_some()) {
        let values = (
            keyed_values(old, &old_point, &op.id),
            keyed_values(new, &new_point, &op.id),
        );
        match values {
            // An operator without keyed state (a tokenizer) has nothing to compare.
            (Ok(was), Ok(is)) if was.is_empty() && is.is_empty() => {}
            (Ok(was), Ok(is)) => states.push(diff::state(&op.id, &was, &is)),
            (Err(StateError::Foreign { .. } | StateError::Formats { .. }), _)
            | (_, Err(StateError::Foreign { .. } | StateError::Formats { .. })) => {
                let why = [values.0.err(), values.1.err()]
                    .into_iter()
                    .flatten()
                    .next();
                not_compared.push(NotCompared {
                    operator: op.id.clone(),
                    reason: why.map(|e| e.to_string()).unwrap_or_default(),
                });
            }
            (Err(source), _) => return Err(state_error(old, source)),
            (_, Err(source)) => return Err(state_error(new, source)),
        }
    }
    Ok((states, not_compared))
}

fn state_error(ran: &Ran, source: StateError) -> ShadowError {
    ShadowError::State {
        job: ran.name.clone(),
        source,
    }
}

/// The final checkpoint a run wrote into its scratch state folder.
fn final_point(ran: &Ran) -> Result<crate::store::Point, ShadowError> {
    let failed = |source| ShadowError::Store {
        job: ran.name.clone(),
        source,
    };
    let checkpoints = ran.store.checkpoints(&ran.job).map_err(failed)?;
    let last = checkpoints
        .last()
        .copied()
        .ok_or_else(|| ShadowError::NoFinalCheckpoint {
            job: ran.name.clone(),
        })?;
    let dir = ran.store.layout().checkpoint(&ran.job, last);
    ran.store.read_point(&dir).map_err(failed)
}

/// Every key of `operator`'s keyed state in `point` and its value, as `host state read` gives
/// them.
fn keyed_values(
    ran: &Ran,
    point: &crate::store::Point,
    operator: &OperatorId,
) -> Result<BTreeMap<Vec<u8>, Json>, StateError> {
    let request = state::ReadRequest {
        operator: operator.clone(),
        key: None,
        key_group: None,
        format: state::Format::Jsonl,
    };
    let mut rows = Vec::new();
    let shown = ran.store.display(&point.dir);
    state::read(&ran.store, point, &shown, &request, &mut rows)?;
    let mut values = BTreeMap::new();
    for line in rows.as_slice().lines() {
        let line = line.expect("read from memory");
        let row: Json = serde_json::from_str(&line).expect("`state read` writes JSON lines");
        let (Some(key), Some(value)) = (row.get("key"), row.get("value")) else {
            continue; // an operator state's row
        };
        let key = state::json::key_from_json(key).expect("`state read` writes keys it reads");
        values.insert(key, value.clone());
    }
    Ok(values)
}
