use super::*;

const WORDCOUNT: &str = r#"
name = "wordcount"
checkpoint_interval_ms = 500

[[operators]]
id = "sink"
role = "sink"
module = "sink.wasm"
mounts = [{ host = "out", guest = "/output", writable = true }]

[[operators]]
id = "lines"
role = "source"
module = "source.wasm"
config = { path = "/input/words.txt", batch = 64 }

[[operators]]
id = "counter"
role = "operator"
module = "counter.wasm"
parallelism = 2

[[edges]]
from = "lines"
to = "counter"
partition = "key-by"

[[edges]]
from = "counter"
to = "sink"
partition = "rebalance"
"#;

fn errors_of(text: &str) -> Vec<String> {
    match Plan::from_toml(text, Path::new("/jobs")) {
        Err(TopologyError::Invalid(errors)) => errors,
        other => panic!("expected validation errors, got {other:?}"),
    }
}

#[test]
fn plan_orders_operators_topologically_and_resolves_paths() {
    let plan = Plan::from_toml(WORDCOUNT, Path::new("/jobs")).unwrap();
    let ids: Vec<_> = plan.operators.iter().map(|op| op.id.as_str()).collect();
    assert_eq!(ids, ["lines", "counter", "sink"]);
    assert!(plan.edges.iter().all(|e| e.from < e.to));
    assert_eq!(plan.operators[0].module, Path::new("/jobs/source.wasm"));
    assert_eq!(plan.operators[2].mounts[0].host, Path::new("/jobs/out"));
    assert_eq!(
        plan.operators[0].config,
        [
            ("batch".to_owned(), "64".to_owned()),
            ("path".to_owned(), "/input/words.txt".to_owned())
        ]
    );
    assert_eq!(plan.checkpoint_interval_ms, 500);
    assert_eq!(plan.checkpoints_retained, CHECKPOINTS_RETAINED_DEFAULT);
}

#[test]
fn plan_refuses_duplicate_and_unknown_operator_ids_all_at_once() {
    let text = WORDCOUNT
        .replace("id = \"sink\"", "id = \"lines\"")
        .replace("to = \"sink\"", "to = \"printer\"");
    let errors = errors_of(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`lines` is used more than once")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("unknown operator `printer`")),
        "{errors:?}"
    );
}

#[test]
fn plan_refuses_a_cycle() {
    let text = format!(
        "{WORDCOUNT}\n[[edges]]\nfrom = \"counter\"\nto = \"counter2\"\n\n[[edges]]\nfrom = \"counter2\"\nto = \"counter\"\n\n[[operators]]\nid = \"counter2\"\nrole = \"operator\"\nmodule = \"c.wasm\"\nparallelism = 2\n"
    );
    let errors = errors_of(&text);
    assert!(errors.iter().any(|e| e.contains("cycle")), "{errors:?}");
}

#[test]
fn plan_refuses_forward_edges_between_different_parallelisms() {
    let text = WORDCOUNT.replace("partition = \"key-by\"", "partition = \"forward\"");
    let errors = errors_of(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("forward edge needs equal parallelism")),
        "{errors:?}"
    );
}

#[test]
fn plan_refuses_roles_that_do_not_fit_their_edges() {
    let text = WORDCOUNT.replace("role = \"sink\"", "role = \"source\"");
    let errors = errors_of(&text);
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`sink`: a source cannot have inputs")),
        "{errors:?}"
    );
}

#[test]
fn plan_refuses_unknown_fields_with_their_name() {
    let text = WORDCOUNT.replace("parallelism = 2", "paralelism = 2");
    match Plan::from_toml(&text, Path::new("/")) {
        Err(TopologyError::Syntax(message)) => assert!(message.contains("paralelism"), "{message}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn plan_refuses_retaining_no_checkpoint() {
    let errors = errors_of(&format!("checkpoints_retained = 0\n{WORDCOUNT}"));
    assert!(
        errors.iter().any(|e| e.contains("checkpoints_retained 0")),
        "{errors:?}"
    );
    let plan = Plan::from_toml(
        &format!("checkpoints_retained = 1\n{WORDCOUNT}"),
        Path::new("/"),
    );
    assert_eq!(plan.unwrap().checkpoints_retained, 1);
}
