use super::*;
use crate::connectors::config::ConnectorKind;

/// A valid job file: four operators, two edges.
pub(super) const WORDCOUNT: &str = r#"
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

fn problems_of(text: &str) -> Vec<Problem> {
    match Plan::from_toml(text, Path::new("/jobs")) {
        Err(TopologyError::Invalid(problems)) => problems,
        other => panic!("expected validation problems, got {other:?}"),
    }
}

fn id(text: &str) -> OperatorId {
    text.parse().unwrap()
}

#[test]
fn plan_orders_operators_topologically_and_resolves_paths() {
    let plan = Plan::from_toml(WORDCOUNT, Path::new("/jobs")).unwrap();
    let ids: Vec<_> = plan.operators.iter().map(|op| op.id.as_str()).collect();
    assert_eq!(ids, ["lines", "counter", "sink"]);
    assert!(plan.edges.iter().all(|e| e.from < e.to));
    assert_eq!(
        plan.operators[0].module(),
        Some(Path::new("/jobs/source.wasm"))
    );
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
    let problems = problems_of(&text);
    assert!(
        problems.contains(&Problem::DuplicateId(id("lines"))),
        "{problems:?}"
    );
    let unknown = Problem::UnknownDownstream {
        from: "counter".to_owned(),
        to: "printer".to_owned(),
    };
    assert!(problems.contains(&unknown), "{problems:?}");
}

#[test]
fn plan_refuses_a_cycle() {
    let text = format!(
        "{WORDCOUNT}\n[[edges]]\nfrom = \"counter\"\nto = \"counter2\"\n\n[[edges]]\nfrom = \"counter2\"\nto = \"counter\"\n\n[[operators]]\nid = \"counter2\"\nrole = \"operator\"\nmodule = \"c.wasm\"\nparallelism = 2\n"
    );
    let problems = problems_of(&text);
    assert!(problems.contains(&Problem::Cycle), "{problems:?}");
}

#[test]
fn plan_refuses_forward_edges_between_different_parallelisms() {
    let text = WORDCOUNT.replace("partition = \"key-by\"", "partition = \"forward\"");
    let forward = Problem::ForwardParallelism {
        from: id("lines"),
        to: id("counter"),
        upstream: 1,
        downstream: 2,
    };
    let problems = problems_of(&text);
    assert!(problems.contains(&forward), "{problems:?}");
}

#[test]
fn plan_refuses_roles_that_do_not_fit_their_edges() {
    let text = WORDCOUNT.replace("role = \"sink\"", "role = \"source\"");
    let misfit = Problem::SourceWithInputs {
        operator: "sink".to_owned(),
    };
    let problems = problems_of(&text);
    assert!(problems.contains(&misfit), "{problems:?}");
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
    let problems = problems_of(&format!("checkpoints_retained = 0\n{WORDCOUNT}"));
    assert!(
        problems.contains(&Problem::NoCheckpointRetained),
        "{problems:?}"
    );
    let plan = Plan::from_toml(
        &format!("checkpoints_retained = 1\n{WORDCOUNT}"),
        Path::new("/"),
    );
    assert_eq!(plan.unwrap().checkpoints_retained, 1);
}

#[test]
fn plan_refuses_memory_below_one_page_and_accepts_one_page() {
    let with_memory = |bytes: u64| {
        WORDCOUNT.replace(
            "parallelism = 2",
            &format!("parallelism = 2\nmemory_bytes_max = {bytes}"),
        )
    };
    let too_low = Problem::LimitTooLow {
        operator: "counter".to_owned(),
    };
    assert_eq!(problems_of(&with_memory(65_535)), [too_low]);
    let plan = Plan::from_toml(&with_memory(65_536), Path::new("/")).unwrap();
    assert_eq!(plan.operators[1].memory_bytes_max, Some(65_536));
}

#[test]
fn an_invalid_job_file_lists_every_problem_in_the_words_a_user_sees() {
    let text = r#"
checkpoints_retained = 0

[[operators]]
id = "lines"
role = "source"
module = "source.wasm"
records_per_second_max = 0

[[operators]]
id = "counter"
role = "operator"
module = "counter.wasm"
parallelism = 2
memory_bytes_max = 65535

[[edges]]
from = "lines"
to = "counter"
"#;
    let error = Plan::from_toml(text, Path::new("/jobs")).unwrap_err();
    assert_eq!(
        error.to_string(),
        "job file is not valid:
  - checkpoints_retained 0 would keep no checkpoint to recover from: retain at least 1 \
(savepoints are kept regardless)
  - operator `lines`: records_per_second_max must be above 0
  - operator `counter`: memory_bytes_max must be at least 65536 (one page) and call_ms_max \
above 0
  - edge lines -> counter: a forward edge needs equal parallelism (1 vs 2); use key-by or \
rebalance
  - operator `counter`: an operator needs incoming and outgoing edges"
    );
}

/// A job of a NATS source into a PostgreSQL sink, `{sink}` being the sink's extra lines and
/// `{edge}` the edge's partition.
fn connectors_job(source: &str, sink: &str, partition: &str) -> String {
    format!(
        "[[operators]]\nid = \"events\"\nrole = \"source\"\n{source}\n\
         [[operators]]\nid = \"db\"\nrole = \"sink\"\nconnector = \"postgres\"\n{sink}\n\
         [[edges]]\nfrom = \"events\"\nto = \"db\"\npartition = \"{partition}\"\n"
    )
}

const NATS: &str =
    "connector = \"nats\"\nconfig = { url = \"nats://127.0.0.1:4222\", stream = \"EVENTS\" }";
const POSTGRES: &str = "config = { url = \"postgres://u@127.0.0.1/db\", table = \"t\" }";

#[test]
fn connectors_plan_with_their_typed_config() {
    let plan = Plan::from_toml(
        &connectors_job(NATS, POSTGRES, "rebalance"),
        Path::new("/j"),
    );
    let plan = plan.unwrap();
    assert!(plan.operators.iter().all(|op| op.module().is_none()));
    let kinds: Vec<_> = plan
        .operators
        .iter()
        .map(|op| op.connector().unwrap().kind().unwrap())
        .collect();
    assert_eq!(kinds, [ConnectorKind::Nats, ConnectorKind::Postgres]);
}

#[test]
fn an_operator_needs_a_module_or_a_connector_and_a_connector_no_guest_grant() {
    let both = connectors_job(
        &format!("module = \"s.wasm\"\n{NATS}"),
        POSTGRES,
        "rebalance",
    );
    let problems = problems_of(&both);
    assert_eq!(
        problems,
        [Problem::ModuleAndConnector {
            operator: "events".to_owned()
        }]
    );
    let neither = connectors_job("", &format!("clock = true\n{POSTGRES}"), "rebalance");
    let problems = problems_of(&neither);
    assert_eq!(
        problems,
        [
            Problem::NoImplementation {
                operator: "events".to_owned()
            },
            Problem::ConnectorGrants {
                operator: "db".to_owned()
            }
        ]
    );
}

#[test]
fn a_connector_config_is_checked_with_the_job_file() {
    let text = connectors_job(
        NATS,
        "config = { url = \"postgres://u@h/db\" }",
        "rebalance",
    );
    let problems = problems_of(&text);
    assert_eq!(problems.len(), 1);
    let message = problems[0].to_string();
    assert!(
        message.starts_with("operator `db`: config: missing field `table`"),
        "{message}"
    );
    let upsert = "config = { url = \"postgres://u@h/db\", table = \"t\", mode = \"upsert\" }";
    let problems = problems_of(&connectors_job(NATS, upsert, "rebalance"));
    assert_eq!(
        problems,
        [Problem::UnkeyedInput {
            operator: "db".to_owned()
        }]
    );
    assert!(Plan::from_toml(&connectors_job(NATS, upsert, "key-by"), Path::new("/j")).is_ok());
}

#[test]
fn a_source_takes_a_watermark_strategy_and_no_other_role_does() {
    let with_strategy = |after: &str, table: &str| {
        WORDCOUNT.replace(after, &format!("{after}\nwatermark = {table}"))
    };
    let source = with_strategy(
        "module = \"source.wasm\"",
        "{ out_of_orderness_ms = 250, idle_ms = 1000 }",
    );
    let plan = Plan::from_toml(&source, Path::new("/")).unwrap();
    let strategy = WatermarkStrategy {
        out_of_orderness_ms: 250,
        idle_ms: Some(1_000),
    };
    assert_eq!(plan.operators[0].watermark, Some(strategy));
    assert_eq!(plan.operators[1].watermark, None);
    let counter = with_strategy("module = \"counter.wasm\"", "{ out_of_orderness_ms = 1 }");
    let never_active = with_strategy("module = \"source.wasm\"", "{ idle_ms = 0 }");
    assert_eq!(
        problems_of(&counter),
        [Problem::WatermarkOfNonSource {
            operator: "counter".to_owned()
        }]
    );
    assert_eq!(
        problems_of(&never_active),
        [Problem::IdleZero {
            operator: "lines".to_owned()
        }]
    );
    let unknown = with_strategy("module = \"source.wasm\"", "{ lateness_ms = 5 }");
    let refused = Plan::from_toml(&unknown, Path::new("/")).unwrap_err();
    assert!(refused.to_string().contains("lateness_ms"), "{refused}");
}
