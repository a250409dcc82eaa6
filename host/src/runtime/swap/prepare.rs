//! A live swap's first stage (see [`super`]): the new module compiled (through the engine's
//! compiled-module cache, on the blocking pool), checked against the operator's world, kept in
//! the module store, and its instances started and asked what they are, all off the hot path.

use super::{UpgradeError, UpgradeSpec};
use crate::engine::{Instance, Module};
use crate::ids::{OperatorId, Role, SubtaskId};
use crate::runtime::build::Blueprint;
use crate::runtime::{OperatorInfo, SwapFailure};
use crate::topology::{Implementation, OperatorPlan};

/// A new module, compiled, checked and described, ready to be swapped in.
pub struct Prepared {
    pub(in crate::runtime) spec: UpgradeSpec,
    /// The operator as it will run: the new module and configuration.
    pub(in crate::runtime) plan: OperatorPlan,
    pub(in crate::runtime) module: Module,
    /// What checkpoints will record of it once the swap is final.
    pub(in crate::runtime) info: OperatorInfo,
    /// Its instances, one per subtask, started (`describe`, `init`) off the hot path; the
    /// swap takes them.
    pub(super) instances: std::sync::Mutex<Vec<Instance>>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared")
            .field("spec", &self.spec)
            .finish()
    }
}

/// Compiles and checks the module of `spec` for the running operator `running`.
pub(in crate::runtime) async fn prepare(
    blueprint: Blueprint,
    spec: UpgradeSpec,
    running: OperatorInfo,
) -> Result<Prepared, UpgradeError> {
    let operator = spec.operator.clone();
    let Some(current) = blueprint.plan.operators.iter().find(|op| op.id == operator) else {
        return Err(UpgradeError::UnknownOperator(operator));
    };
    if current.role != Role::Operator {
        let role = current.role;
        return Err(UpgradeError::NotAnOperator { operator, role });
    }
    let mut plan = current.clone();
    plan.implementation = Implementation::Module(spec.module.clone());
    if let Some(config) = &spec.config {
        plan.config = config.clone();
        plan.config.sort();
    }
    let (engine, path) = (blueprint.engine.clone(), spec.module.clone());
    let loaded = tokio::task::spawn_blocking(move || engine.load(&path, Role::Operator)).await;
    let module = loaded
        .expect("loading a module does not panic")
        .map_err(|source| UpgradeError::Module {
            operator: operator.clone(),
            source,
        })?;
    let mut info = running.clone();
    info.module_sha256 = module.sha256.clone();
    info.remap = None;
    let started = start_instances(&blueprint, &plan, &module, &mut info).await;
    let instances = started.map_err(|failure| UpgradeError::Start {
        operator: operator.clone(),
        failure: Box::new(failure),
    })?;
    if info.rescale != running.rescale {
        let (old, new) = (running.rescale, info.rescale);
        return Err(UpgradeError::Rescale { operator, old, new });
    }
    let (store, job, sha256) = (
        blueprint.store.clone(),
        blueprint.job.clone(),
        module.sha256.clone(),
    );
    let (path, id) = (spec.module.clone(), operator.clone());
    let kept = tokio::task::spawn_blocking(move || keep_module(&store, &job, &id, &path, &sha256));
    kept.await.expect("keeping a module does not panic")?;
    Ok(Prepared {
        spec,
        plan,
        module,
        info,
        instances: std::sync::Mutex::new(instances),
    })
}

/// Puts the new module into the module store and names it among the running job's modules
/// (which `host gc` keeps), before any point can name it: a module refused later stays there
/// unnamed, for `gc` to collect.
fn keep_module(
    store: &crate::store::Store,
    job: &crate::ids::JobId,
    operator: &OperatorId,
    path: &std::path::Path,
    sha256: &str,
) -> Result<(), UpgradeError> {
    let keep = |source| UpgradeError::Keep {
        operator: operator.clone(),
        source,
    };
    let bytes = std::fs::read(path).map_err(|source| {
        let path = path.to_owned();
        keep(crate::store::StoreError::Io { path, source })
    })?;
    if crate::ids::sha256_hex(&bytes) != sha256 {
        let (operator, path) = (operator.clone(), path.to_owned());
        return Err(UpgradeError::Changed { operator, path });
    }
    store.put_module(sha256, &bytes).map_err(keep)?;
    let _starts = store.lock_starts().map_err(keep)?;
    let mut status = store.read_status(job).map_err(keep)?;
    if !status.modules.iter().any(|m| m == sha256) {
        status.modules.push(sha256.to_owned());
        status.modules.sort();
        store.write_status(&status).map_err(keep)?;
    }
    Ok(())
}

/// Starts one instance of `module` per subtask of the operator `plan`.
pub(super) async fn start_instances(
    blueprint: &Blueprint,
    plan: &OperatorPlan,
    module: &Module,
    info: &mut OperatorInfo,
) -> Result<Vec<Instance>, SwapFailure> {
    let mut instances = Vec::new();
    for subtask in 0..plan.parallelism {
        let started = blueprint.start_subtask(plan, module, subtask, info);
        instances.push(started.await.map_err(|cause| SwapFailure::Start {
            subtask: SubtaskId {
                operator: plan.id.clone(),
                index: subtask,
            },
            cause,
        })?);
    }
    Ok(instances)
}
