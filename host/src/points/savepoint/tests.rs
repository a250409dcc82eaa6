use super::*;
use crate::barrier::BarrierKind;
use crate::store::{StateFile, StateLayout};

#[test]
fn restore_points_parse_by_shape() {
    assert_eq!(
        RestorePoint::parse("./sp").unwrap(),
        RestorePoint::Folder("./sp".into())
    );
    assert_eq!(
        RestorePoint::parse("/tmp/sp").unwrap(),
        RestorePoint::Folder("/tmp/sp".into())
    );
    assert_eq!(
        RestorePoint::parse("job-abc:7").unwrap(),
        RestorePoint::JobCheckpoint("job-abc".parse().unwrap(), CheckpointId(7))
    );
    assert_eq!(
        RestorePoint::parse("sp-x").unwrap(),
        RestorePoint::Name("sp-x".to_owned())
    );
    assert!(
        RestorePoint::parse("job-abc:seven")
            .unwrap_err()
            .contains("not a checkpoint number")
    );
    assert!(RestorePoint::parse("a b").is_err());
}

/// A point of operators `(id, role, parallelism)`, each with a state file per subtask.
fn metadata(operators: &[(&str, Role, u32)]) -> Metadata {
    Metadata {
        job: "job-a".parse().unwrap(),
        checkpoint: CheckpointId(1),
        kind: BarrierKind::Savepoint,
        completed_unix_ms: 0,
        job_file: String::new(),
        max_parallelism: 128,
        key_group_function: KEY_GROUP_FUNCTION.to_owned(),
        state_layout: StateLayout::Chained,
        operators: operators
            .iter()
            .map(|&(id, role, parallelism)| OperatorState {
                id: id.parse().unwrap(),
                role,
                module_sha256: String::new(),
                module_name: String::new(),
                module_version: String::new(),
                parallelism,
                files: (0..parallelism)
                    .map(|subtask| StateFile {
                        subtask,
                        file: format!("{id}-{subtask}.state"),
                        len: 0,
                        checksum: [0; 16],
                    })
                    .collect(),
            })
            .collect(),
        definition: None,
        resumed_from: None,
        generation: None,
    }
}

fn plan(counter_parallelism: u32, max_parallelism: u32) -> Plan {
    let text = format!(
        "max_parallelism = {max_parallelism}\n\
         [[operators]]\nid = \"src\"\nrole = \"source\"\nmodule = \"s.wasm\"\n\
         [[operators]]\nid = \"counter\"\nrole = \"sink\"\nmodule = \"c.wasm\"\nparallelism = {counter_parallelism}\n\
         [[edges]]\nfrom = \"src\"\nto = \"counter\"\npartition = \"key-by\"\n"
    );
    Plan::from_toml(&text, Path::new("/")).unwrap()
}

const SOURCE: (&str, Role, u32) = ("src", Role::Source, 1);
const COUNTER: (&str, Role, u32) = ("counter", Role::Sink, 2);

#[test]
fn compatibility_accepts_a_point_of_the_same_shape() {
    assert_eq!(
        check_compatibility(&metadata(&[SOURCE, COUNTER]), &plan(2, 128), false),
        Ok(())
    );
}

#[test]
fn compatibility_refuses_state_without_an_operator_unless_allowed() {
    let point = metadata(&[SOURCE, COUNTER, ("gone", Role::Operator, 1)]);
    let problems = check_compatibility(&point, &plan(2, 128), false).unwrap_err();
    assert_eq!(problems, [Mismatch::NotInJob("gone".parse().unwrap())]);
    assert!(
        problems[0]
            .to_string()
            .contains("--allow-non-restored-state")
    );
    assert!(check_compatibility(&point, &plan(2, 128), true).is_ok());
}

#[test]
fn compatibility_leaves_a_changed_parallelism_to_the_module() {
    assert_eq!(
        check_compatibility(&metadata(&[COUNTER]), &plan(3, 128), false),
        Ok(())
    );
}

#[test]
fn compatibility_refuses_a_changed_max_parallelism() {
    let problems =
        check_compatibility(&metadata(&[SOURCE, COUNTER]), &plan(2, 7), false).unwrap_err();
    assert_eq!(problems, [Mismatch::MaxParallelism { point: 128, job: 7 }]);
    assert!(problems[0].to_string().contains("max_parallelism = 128"));
}

#[test]
fn compatibility_refuses_another_key_group_function() {
    let mut point = metadata(&[SOURCE, COUNTER]);
    point.key_group_function = "murmur3-32".to_owned();
    let problems = check_compatibility(&point, &plan(2, 128), false).unwrap_err();
    assert_eq!(
        problems,
        [Mismatch::KeyGroupFunction {
            point: "murmur3-32".to_owned(),
            host: "xxh3-64-mod"
        }]
    );
}

#[test]
fn compatibility_refuses_a_changed_role_under_the_same_id() {
    let point = metadata(&[SOURCE, ("counter", Role::Operator, 2)]);
    let problems = check_compatibility(&point, &plan(2, 128), false).unwrap_err();
    assert_eq!(
        problems,
        [Mismatch::Role {
            operator: "counter".parse().unwrap(),
            point: Role::Operator,
            job: Role::Sink
        }]
    );
    assert!(
        problems[0]
            .to_string()
            .contains("role `operator` in the savepoint")
    );
}

#[test]
fn compatibility_refuses_a_point_missing_a_subtask_state_file() {
    let mut point = metadata(&[SOURCE, COUNTER]);
    point.operators[1].files.remove(1);
    let problems = check_compatibility(&point, &plan(2, 128), false).unwrap_err();
    assert_eq!(
        problems,
        [Mismatch::MissingState {
            operator: "counter".parse().unwrap(),
            subtask: 1,
            parallelism: 2
        }]
    );
    let mut doubled = metadata(&[SOURCE, COUNTER]);
    doubled.operators[1].files[1].subtask = 0;
    let problems = check_compatibility(&doubled, &plan(2, 128), false).unwrap_err();
    assert!(matches!(
        problems[..],
        [Mismatch::StrayState { subtask: 0, .. }]
    ));
}

#[test]
fn compatibility_lets_new_operators_start_empty() {
    assert!(check_compatibility(&metadata(&[SOURCE]), &plan(2, 128), false).is_ok());
}

#[test]
fn renames_move_state_to_the_new_ids_and_refuse_what_would_collide() {
    let mut metadata = metadata(&[("a", Role::Source, 1), ("b", Role::Operator, 2)]);
    let id = |s: &str| -> OperatorId { s.parse().unwrap() };
    let ids = |m: &Metadata| {
        m.operators
            .iter()
            .map(|o| o.id.to_string())
            .collect::<Vec<_>>()
    };
    let before = ids(&metadata);
    let unknown = rename(&mut metadata, &[(id("nope"), id("x"))]).unwrap_err();
    assert!(matches!(&unknown[..], [Mismatch::RenameUnknown { .. }]));
    let (a, b) = (before[0].as_str(), before[1].as_str());
    let taken = rename(&mut metadata, &[(id(a), id(b))]).unwrap_err();
    assert!(matches!(&taken[..], [Mismatch::RenameTaken { .. }]));
    assert_eq!(ids(&metadata), before, "a refused rename changes nothing");
    rename(&mut metadata, &[(id(a), id(b)), (id(b), id(a))]).unwrap();
    assert_eq!(ids(&metadata)[..2], [b, a], "a swap");
}
