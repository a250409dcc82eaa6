//! The job, read and verified before anything is instantiated ([`Prepared`]): its job file, or
//! the program that wrote the point it resumes from, the point's state checked against it, and
//! its connectors' secrets.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use host::barrier::BarrierKind;
use host::connectors::secret::{self, Secrets};
use host::ids::JobId;
use host::points::savepoint::{self, Mapping, RestorePoint};
use host::protected::Protected;
use host::runtime::{self, JobRecord, RestoreFrom};
use host::store::{Origin, Store};
use host::topology::Plan;

/// Everything a job needs, read and verified before anything is instantiated.
pub(in crate::cli) struct Prepared {
    /// The job file, or `None`: the program that wrote the point.
    pub(super) job_file: Option<PathBuf>,
    pub(super) text: String,
    /// The folder the job file's relative paths resolve against.
    pub(super) base: PathBuf,
    pub(super) plan: Plan,
    /// Modules fetched from an object store for a program without a job file.
    pub(super) _fetched: Option<tempfile::TempDir>,
    /// The point's folder, and the job that took it.
    pub(super) from: Option<(PathBuf, JobId)>,
    /// The point as `--from` named it, and as a person should read its location (its
    /// `s3://…` URL on an object store).
    pub(super) point: Option<(RestorePoint, String)>,
    /// The point's state, until the job is built from it.
    pub(super) restore: Option<RestoreFrom>,
    /// The secrets of its connectors, read from the environment or their files.
    pub(super) secrets: Secrets,
    /// What `prepare` was asked, to prepare the job again.
    pub(super) asked: Asked,
}

/// The arguments of [`prepare`] besides the store and the job file.
#[derive(Clone)]
pub(super) struct Asked {
    pub(super) from: Option<String>,
    pub(super) mapping: Mapping,
    pub(super) checkpoint_interval: Option<u64>,
}

impl Prepared {
    /// The job that took the point this job resumes from.
    pub(super) fn point_job(&self) -> Option<&JobId> {
        self.from.as_ref().map(|(_, job)| job)
    }

    /// Whether running this job takes over the point's job: a point other machines may share
    /// ([`take_over_point_job`]).
    pub(super) fn takes_over(&self, store: &Store) -> bool {
        self.from
            .as_ref()
            .is_some_and(|(dir, _)| store.resuming_takes_over(dir))
    }

    /// Refuses a point's recorded program that grants folders, unless the point was written
    /// here by this user or `trusted` ([`super::grants`]); a job file's own grants are its own.
    pub(in crate::cli) fn check_grants(&self, store: &Store, trusted: bool) -> anyhow::Result<()> {
        let (None, Some((dir, _)), Some((_, shown))) = (&self.job_file, &self.from, &self.point)
        else {
            return Ok(());
        };
        crate::cli::grants::check(store, dir, shown, &self.plan, trusted)?;
        Ok(())
    }

    /// The job as a shadow run takes it ([`host::shadow`]), named by its job file.
    pub(in crate::cli) fn into_shadow_side(mut self, store: &Store) -> host::shadow::Side {
        let name = match &self.job_file {
            Some(file) => file.display().to_string(),
            None => "the program that wrote the point".to_owned(),
        };
        host::shadow::Side {
            name,
            record: self.record(),
            restore: self.restore.take().expect("prepared from a point"),
            protected: self.protected(store),
            secrets: self.secrets.clone(),
            plan: self.plan,
        }
    }

    /// The same job prepared again, `--from` resolved anew.
    pub(super) fn again(&self, store: &Store) -> anyhow::Result<Prepared> {
        let Asked {
            from,
            mapping,
            checkpoint_interval,
        } = self.asked.clone();
        let from = from.as_deref();
        let job_file = self.job_file.as_deref();
        prepare(store, job_file, from, &mapping, checkpoint_interval)
    }

    /// The refusal of this job, listing every problem.
    pub(super) fn refusal(&self, problems: &[String]) -> anyhow::Error {
        let job = match &self.job_file {
            Some(file) => file.display().to_string(),
            None => "the program that wrote the point".to_owned(),
        };
        let what = match &self.point {
            Some((_, shown)) => format!("cannot start {job} from {shown}"),
            None => format!("cannot start {job}"),
        };
        anyhow::anyhow!("{what}:\n  - {}", problems.join("\n  - "))
    }

    /// The folders none of the job's mounts may reach: the state folder, its compiled-module
    /// cache, the job file's folder and its module files.
    pub(super) fn protected(&self, store: &Store) -> Protected {
        let layout = store.layout();
        let modules = self.plan.operators.iter().filter_map(|op| op.module());
        Protected::new(layout.root(), &layout.cache(), Some(&self.base)).with_modules(modules)
    }

    /// What every point of the job records of its definition and lineage.
    pub(super) fn record(&self) -> JobRecord {
        let origin = self.restore.as_ref().map(|restore| {
            let m = &restore.metadata;
            let dir = self.from.as_ref().map(|(dir, _)| dir);
            let name = dir.and_then(|dir| dir.file_name()?.to_str());
            Origin {
                job: m.job.clone(),
                checkpoint: m.checkpoint,
                savepoint: name
                    .filter(|name| m.kind == BarrierKind::Savepoint && name.starts_with("sp-"))
                    .and_then(|name| name.parse().ok()),
            }
        });
        JobRecord::new(self.text.clone(), &self.base, origin)
    }
}

/// The job file's text, the folder its relative paths resolve against, and its plan.
fn read_job_file(job_file: &Path) -> anyhow::Result<(String, PathBuf, Plan)> {
    let text = std::fs::read_to_string(job_file)
        .with_context(|| format!("cannot read job file {}", job_file.display()))?;
    let base = match job_file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let plan = Plan::from_toml(&text, &base).with_context(|| format!("{}", job_file.display()))?;
    Ok((text, base, plan))
}

/// Reads the job file (without one, the program that wrote the point `from`: its recorded
/// definition and its modules from the module store, each verified) and, with `from`, resolves
/// the point and verifies it against the job. Reads only.
pub(in crate::cli) fn prepare(
    store: &Store,
    job_file: Option<&Path>,
    from: Option<&str>,
    mapping: &Mapping,
    checkpoint_interval: Option<u64>,
) -> anyhow::Result<Prepared> {
    let (text, base, mut plan, fetched) = program(store, job_file, from)?;
    if let Some(ms) = checkpoint_interval {
        plan.checkpoint_interval_ms = ms;
    }
    let secrets = secret::resolve(&plan, |name| std::env::var(name).ok()).map_err(|errors| {
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!(
            "cannot read a connector's secret:\n  - {}",
            errors.join("\n  - ")
        )
    })?;
    let read = from.map(|from| read_point(store, from, &plan, mapping));
    let (point_dir, point, restore) = match read.transpose()? {
        None => (None, None, None),
        Some(read) => (Some(read.from), Some(read.point), Some(read.restore)),
    };
    Ok(Prepared {
        job_file: job_file.map(Path::to_owned),
        text,
        base,
        plan,
        _fetched: fetched,
        from: point_dir,
        point,
        restore,
        secrets,
        asked: Asked {
            from: from.map(str::to_owned),
            mapping: mapping.clone(),
            checkpoint_interval,
        },
    })
}

/// The job file's text, its folder, its plan, and the temporary folder of the modules fetched
/// from an object store; without a job file, those of the program that wrote the point `from`.
fn program(
    store: &Store,
    job_file: Option<&Path>,
    from: Option<&str>,
) -> anyhow::Result<(String, PathBuf, Plan, Option<tempfile::TempDir>)> {
    match (job_file, from) {
        (Some(job_file), _) => {
            let (text, base, plan) = read_job_file(job_file)?;
            Ok((text, base, plan, None))
        }
        (None, Some(from)) => {
            let point = RestorePoint::parse(from).map_err(anyhow::Error::msg)?;
            let dir = resolve(store, &point)?;
            let program = host::points::program::of_point(store, &dir, &store.display(&dir))?;
            Ok((program.text, program.base, program.plan, program.fetched))
        }
        (None, None) => anyhow::bail!(
            "nothing to run: give a job file, or --from POINT to run the program that wrote POINT"
        ),
    }
}

/// A point read and verified for the job ([`read_point`]).
struct ReadPoint {
    /// Its folder, and the job that took it.
    from: (PathBuf, JobId),
    /// The point as `--from` named it, and as a person should read its location.
    point: (RestorePoint, String),
    /// Its state.
    restore: RestoreFrom,
}

/// The point `from`, resolved, read and verified against `plan` as `mapping` maps it.
fn read_point(
    store: &Store,
    from: &str,
    plan: &Plan,
    mapping: &Mapping,
) -> anyhow::Result<ReadPoint> {
    let point = RestorePoint::parse(from).map_err(anyhow::Error::msg)?;
    let dir = resolve(store, &point)?;
    let reading = format!("reading and verifying {}", store.display(&dir));
    let started_at = std::time::Instant::now();
    let (metadata, states) = crate::cli::progress::spinning(&reading, || {
        savepoint::load_for(store, &dir, plan, mapping)
    })?;
    tracing::debug!(elapsed = ?started_at.elapsed(), "point read and verified");
    let shown = store.display(&dir);
    let location = store.layout().relative(&dir).unwrap_or_else(|| dir.clone());
    let from = (dir, metadata.job.clone());
    let restore = RestoreFrom {
        metadata,
        states,
        point: Some(runtime::PointRef {
            location,
            renames: mapping.renames.clone(),
            allow_non_restored: mapping.allow_non_restored,
        }),
    };
    Ok(ReadPoint {
        from,
        point: (point, shown),
        restore,
    })
}

/// The folder (or object-store location) of `point`, absolute.
pub(super) fn resolve(store: &Store, point: &RestorePoint) -> anyhow::Result<PathBuf> {
    let dir = savepoint::resolve(store, point)?;
    Ok(std::path::absolute(&dir).unwrap_or(dir))
}
