//! `host check`'s report: what `run` would do with each operator's state, decided from the
//! point's metadata, the job's plan and what building the job (every mount read-only) said.
//!
//! Each operator is `restored` (the same module), `migrated` (another module or version, and
//! its `restore` accepted the state), `new` (no state in the point: it starts empty), `dropped`
//! (state without an operator, allowed by `--allow-non-restored-state`) or `refused` (quoting
//! the module's own error); with the timers the point holds pending for it. With `--json`, the
//! same as one object.

use std::collections::BTreeMap;

use host::ids::OperatorId;
use host::runtime::{BuildError, OperatorInfo};
use host::store::Metadata;
use host::time::Domain;
use host::time::timers::TimerService;
use host::topology::Plan;

/// What `run` would do with one operator's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The same module restores its own state.
    Restored,
    /// Another module (or version) accepted the state.
    Migrated,
    /// No state in the point: it starts empty.
    New,
    /// State in the point that no operator takes.
    Dropped,
    /// The module, or the host on its behalf, refused.
    Refused,
}

/// One line of the report.
#[derive(Debug, serde::Serialize)]
pub struct Verdict {
    /// The operator.
    pub operator: OperatorId,
    /// What happens to its state.
    pub status: Status,
    /// The module that wrote the state, `name version`, if the point has some.
    pub from: Option<String>,
    /// The module that would take it, `name version`, if the job was built.
    pub to: Option<String>,
    /// Why it was refused, one entry per subtask (or the operator) at fault.
    pub errors: Vec<String>,
    /// Its id in the point, if `--rename` gave it a new one.
    pub renamed_from: Option<OperatorId>,
    /// The timers the point holds pending for it, if any.
    pub timers: Option<Pending>,
}

/// Timers pending in a point, by clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Event-time timers.
    pub event_time: u64,
    /// Processing-time timers.
    pub processing_time: u64,
}

/// The timers each operator's state in the point holds pending (operators without any are
/// left out; timers that do not read back are the restore's to refuse). Performs no I/O.
pub fn pending_timers(
    max_parallelism: u32,
    states: &host::store::States,
) -> BTreeMap<OperatorId, Pending> {
    let mut pending: BTreeMap<OperatorId, Pending> = BTreeMap::new();
    for ((operator, _), held) in states {
        let chains = held
            .timers
            .iter()
            .map(|(&group, chain)| (group, chain.iter().map(|piece| &piece.bytes[..]).collect()));
        let all = 0..max_parallelism;
        let Ok(timers) = TimerService::restore(max_parallelism, all, chains) else {
            continue;
        };
        if timers.pending() > 0 {
            let sum = pending.entry(operator.clone()).or_default();
            sum.event_time += timers.pending_of(Domain::Event);
            sum.processing_time += timers.pending_of(Domain::Processing);
        }
    }
    pending
}

/// Decides each operator's status. `modules` holds the SHA-256 of each operator's module file
/// (where it could be read), `built` the job's operators if building succeeded, `errors` what
/// building refused. Performs no I/O.
pub fn verdicts(
    metadata: &Metadata,
    plan: &Plan,
    modules: &BTreeMap<OperatorId, String>,
    built: Option<&[OperatorInfo]>,
    errors: &[BuildError],
) -> Vec<Verdict> {
    let mut refused: BTreeMap<&OperatorId, Vec<String>> = BTreeMap::new();
    for error in errors {
        refused
            .entry(&error.operator)
            .or_default()
            .push(error.to_string());
    }
    let mut verdicts = Vec::new();
    for op in &plan.operators {
        let point = metadata.operators.iter().find(|s| s.id == op.id);
        let info = built.and_then(|ops| ops.iter().find(|i| i.id == op.id));
        let errors = refused.remove(&op.id).unwrap_or_default();
        let status = match point {
            _ if !errors.is_empty() => Status::Refused,
            None => Status::New,
            Some(p) if modules.get(&op.id) == Some(&p.module_sha256) => Status::Restored,
            Some(_) => Status::Migrated,
        };
        verdicts.push(Verdict {
            operator: op.id.clone(),
            status,
            from: point.map(|p| format!("{} {}", p.module_name, p.module_version)),
            to: info.map(|i| format!("{} {}", i.module_name, i.module_version)),
            errors,
            renamed_from: None,
            timers: None,
        });
    }
    for state in &metadata.operators {
        if plan.operator(&state.id).is_none() {
            verdicts.push(Verdict {
                operator: state.id.clone(),
                status: Status::Dropped,
                from: Some(format!("{} {}", state.module_name, state.module_version)),
                to: None,
                errors: Vec::new(),
                renamed_from: None,
                timers: None,
            });
        }
    }
    verdicts
}

/// The SHA-256 of each operator's module file that can be read; empty for a connector, as
/// points record a connector (whose state format is its version).
pub fn module_hashes(plan: &Plan) -> BTreeMap<OperatorId, String> {
    let hash = |op: &host::topology::OperatorPlan| match op.module() {
        Some(path) => std::fs::read(path)
            .ok()
            .map(|b| host::engine::sha256_hex(&b)),
        None => Some(String::new()),
    };
    let hashes = plan
        .operators
        .iter()
        .filter_map(|op| hash(op).map(|sha| (op.id.clone(), sha)));
    hashes.collect()
}

/// Prints the report for people.
pub fn print(verdicts: &[Verdict], point: &str) {
    println!("from {point}:");
    for v in verdicts {
        let modules = match (&v.from, &v.to) {
            (Some(from), Some(to)) if from != to => format!("{from} -> {to}"),
            (Some(from), _) => from.clone(),
            (None, Some(to)) => to.clone(),
            (None, None) => String::new(),
        };
        let status = serde_json::to_value(v.status).expect("a status serializes");
        let renamed = v
            .renamed_from
            .as_ref()
            .map_or(String::new(), |old| format!(" (renamed from `{old}`)"));
        println!(
            "  {:<16} {:<9} {modules}{renamed}",
            v.operator.as_str(),
            status.as_str().unwrap_or("")
        );
        if let Some(timers) = v.timers {
            println!(
                "      timers pending: {} event-time, {} processing-time",
                timers.event_time, timers.processing_time
            );
        }
        for error in &v.errors {
            println!("      {}", super::terminal::escaped(error));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        let text = "[[operators]]\nid = \"src\"\nrole = \"source\"\nmodule = \"s.wasm\"\n\
                    [[operators]]\nid = \"count\"\nrole = \"operator\"\nmodule = \"c.wasm\"\n\
                    [[operators]]\nid = \"fresh\"\nrole = \"sink\"\nmodule = \"f.wasm\"\n\
                    [[edges]]\nfrom = \"src\"\nto = \"count\"\npartition = \"forward\"\n\
                    [[edges]]\nfrom = \"count\"\nto = \"fresh\"\npartition = \"forward\"\n";
        Plan::from_toml(text, std::path::Path::new("/")).unwrap()
    }

    fn point(operators: &[(&str, &str)]) -> Metadata {
        Metadata {
            job: "job-a".parse().unwrap(),
            checkpoint: host::ids::CheckpointId(1),
            kind: host::barrier::BarrierKind::Savepoint,
            completed_unix_ms: 0,
            job_file: String::new(),
            max_parallelism: 128,
            key_group_function: host::key_group::KEY_GROUP_FUNCTION.to_owned(),
            state_layout: host::store::StateLayout::Chained,
            operators: operators
                .iter()
                .map(|(id, sha)| host::store::OperatorState {
                    id: id.parse().unwrap(),
                    role: host::ids::Role::Operator,
                    module_sha256: (*sha).to_owned(),
                    module_name: "m".to_owned(),
                    module_version: (*sha).to_owned(),
                    parallelism: 1,
                    files: vec![],
                })
                .collect(),
            definition: None,
            resumed_from: None,
            generation: None,
        }
    }

    fn info(id: &str, sha: &str) -> OperatorInfo {
        OperatorInfo {
            id: id.parse().unwrap(),
            role: host::ids::Role::Operator,
            parallelism: 1,
            module_sha256: sha.to_owned(),
            module_name: "m".to_owned(),
            module_version: sha.to_owned(),
            rescale: host::snapshot::Rescale::Refuse,
            remap: None,
        }
    }

    #[test]
    fn each_operator_gets_its_status() {
        let metadata = point(&[("src", "1"), ("count", "1"), ("gone", "1")]);
        let built = [info("src", "1"), info("count", "2"), info("fresh", "9")];
        let modules = BTreeMap::from(["src", "count", "fresh"].map(|id| {
            let sha = built
                .iter()
                .find(|i| i.id.as_str() == id)
                .unwrap()
                .module_sha256
                .clone();
            (id.parse().unwrap(), sha)
        }));
        let statuses: Vec<_> = verdicts(&metadata, &plan(), &modules, Some(&built), &[])
            .into_iter()
            .map(|v| (v.operator.to_string(), v.status))
            .collect();
        let expected = [
            ("src", Status::Restored),
            ("count", Status::Migrated),
            ("fresh", Status::New),
            ("gone", Status::Dropped),
        ];
        assert_eq!(statuses, expected.map(|(id, s)| (id.to_owned(), s)));
    }

    #[test]
    fn a_refusal_names_the_subtask_and_quotes_the_module() {
        let metadata = point(&[("count", "1")]);
        let refused = host::engine::GuestError::Refused {
            subtask: host::ids::SubtaskId {
                operator: "count".parse().unwrap(),
                index: 0,
            },
            call: "restore",
            message: "unsupported state version 3".to_owned(),
        };
        let error = BuildError {
            operator: "count".parse().unwrap(),
            subtask: Some(0),
            cause: refused.into(),
        };
        let verdicts = verdicts(&metadata, &plan(), &BTreeMap::new(), None, &[error]);
        let count = verdicts
            .iter()
            .find(|v| v.operator.as_str() == "count")
            .unwrap();
        assert_eq!(count.status, Status::Refused);
        assert_eq!(
            count.errors,
            [
                "operator `count` (subtask 0): count[0]: `restore` refused: unsupported state version 3"
            ]
        );
    }
}
