//! Property tests of [`Plan::from_toml`]: a job file is whatever its author wrote.

use proptest::prelude::*;

use super::tests::WORDCOUNT;
use super::*;
use crate::fuzz::{explained, mutated, text};

/// Operator ids the generated job files draw from: a few valid ones (so that edges find their
/// ends, twice at times) and invalid ones.
fn operator_id() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(str::to_owned),
        1 => text(),
    ]
}

/// Numbers around the limits, and any.
fn count() -> impl Strategy<Value = u32> {
    prop_oneof![
        prop::sample::select(vec![
            0,
            1,
            2,
            3,
            PARALLELISM_MAX,
            PARALLELISM_MAX + 1,
            u32::MAX
        ]),
        any::<u32>(),
    ]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Source), Just(Role::Operator), Just(Role::Sink)]
}

fn operator() -> impl Strategy<Value = OperatorSpec> {
    let limits = (
        any::<bool>(),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u64>()),
        prop::option::of((any::<u64>(), prop::option::of(any::<u64>()))),
    );
    (operator_id(), role(), text(), count(), limits).prop_map(
        |(id, role, module, parallelism, limits)| OperatorSpec {
            id,
            role,
            module: Some(module.into()),
            connector: None,
            parallelism,
            config: toml::Table::new(),
            mounts: Vec::new(),
            clock: limits.0,
            records_per_second_max: limits.1,
            memory_bytes_max: limits.2,
            call_ms_max: limits.3,
            watermark: limits
                .4
                .map(|(out_of_orderness_ms, idle_ms)| WatermarkStrategy {
                    out_of_orderness_ms,
                    idle_ms,
                }),
        },
    )
}

fn edge() -> impl Strategy<Value = EdgeSpec> {
    let partition = prop::sample::select(vec![
        Partition::Forward,
        Partition::KeyBy,
        Partition::Broadcast,
        Partition::Rebalance,
    ]);
    (operator_id(), operator_id(), partition).prop_map(|(from, to, partition)| EdgeSpec {
        from,
        to,
        partition,
    })
}

/// Job files of any shape: most are invalid, some run.
fn job_file() -> impl Strategy<Value = JobFile> {
    let settings = (
        prop::option::of(text()),
        prop::option::of(any::<u64>()),
        prop::option::of(count()),
        prop::option::of(count()),
    );
    let graph = (
        prop::collection::vec(operator(), 0..6),
        prop::collection::vec(edge(), 0..8),
    );
    (settings, graph).prop_map(|(settings, (operators, edges))| JobFile {
        name: settings.0,
        checkpoint_interval_ms: settings.1,
        checkpoints_retained: settings.2,
        max_parallelism: settings.3,
        restart: RestartStrategy::default(),
        operators,
        edges,
    })
}

/// Parses and validates `text`, which must not panic; a refusal must say why, every problem.
fn plans_or_explains(text: &str) -> Result<Option<Plan>, TestCaseError> {
    match Plan::from_toml(text, Path::new("/jobs")) {
        Ok(plan) => Ok(Some(plan)),
        Err(refusal) => {
            explained(&refusal)?;
            if let TopologyError::Invalid(problems) = &refusal {
                prop_assert!(!problems.is_empty());
                problems.iter().try_for_each(explained)?;
            }
            Ok(None)
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_text_is_refused_with_a_reason(text in ".{0,256}") {
        plans_or_explains(&text)?;
    }

    #[test]
    fn mutated_job_files_are_refused_with_a_reason(
        bytes in mutated(WORDCOUNT.as_bytes().to_vec()),
    ) {
        plans_or_explains(&String::from_utf8_lossy(&bytes))?;
    }

    /// Every job file that parses: refused with its problems, or a plan whose edges go from
    /// earlier to later operators; and its text plans as the file itself does.
    #[test]
    fn job_files_of_any_shape_plan_or_are_refused_with_a_reason(file in job_file()) {
        let text = toml::to_string(&file).expect("a job file serializes");
        let planned = plans_or_explains(&text)?;
        if let Some(plan) = &planned {
            prop_assert_eq!(plan.operators.len(), file.operators.len());
            prop_assert!(plan.edges.iter().all(|e| e.from < e.to));
        }
        let direct = Plan::from_job_file(file, Path::new("/jobs")).ok();
        prop_assert_eq!(planned, direct);
    }
}
