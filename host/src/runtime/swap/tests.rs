use super::*;

#[test]
fn the_job_file_names_the_swapped_module_and_config() {
    let text = "name = \"j\"\n[[operators]]\nid = \"a\"\nmodule = \"a.wasm\"\n\
                [[operators]]\nid = \"b\"\nmodule = \"b1.wasm\"\nconfig = { x = \"1\" }\n";
    let plan = OperatorPlan {
        id: "b".parse().unwrap(),
        role: Role::Operator,
        implementation: crate::topology::Implementation::Module("/m/b2.wasm".into()),
        parallelism: 1,
        config: vec![("y".to_owned(), "2".to_owned())],
        mounts: Vec::new(),
        clock: false,
        records_per_second_max: None,
        watermark: None,
        memory_bytes_max: None,
        call_ms_max: None,
    };
    let table: toml::Table = job_file_with(text, &plan).parse().unwrap();
    let ops = table["operators"].as_array().unwrap();
    assert_eq!(ops[0]["module"].as_str(), Some("a.wasm"));
    assert_eq!(ops[1]["module"].as_str(), Some("/m/b2.wasm"));
    assert_eq!(ops[1]["config"].as_table().unwrap().len(), 1);
    assert_eq!(ops[1]["config"]["y"].as_str(), Some("2"));
    assert_eq!(table["name"].as_str(), Some("j"));
}

#[test]
fn the_canary_window_passes_on_both_its_records_and_its_time_or_when_the_input_ends() {
    let canary = Canary {
        records: 100,
        ms: 50,
    };
    let (short, long) = (Duration::from_millis(49), Duration::from_millis(50));
    assert!(!canary.passed(99, long, false));
    assert!(!canary.passed(100, short, false));
    assert!(canary.passed(100, long, false));
    assert!(canary.passed(0, Duration::ZERO, true));
    let none = Canary { records: 0, ms: 0 };
    assert!(none.passed(0, Duration::ZERO, false));
}

#[test]
fn the_pause_is_measured_once_and_every_record_counted() {
    let (order, _rx) = SwapOrder::new(CheckpointId(3), Step::Whole, Arc::default());
    let mut swapped = Swapped::new(&order, Instant::now());
    assert!(swapped.processed(5).is_some());
    assert!(swapped.processed(7).is_none());
    assert_eq!(order.count.read(), (12, 1));
    let mut other = Swapped::new(&order, Instant::now());
    assert!(other.processed(1).is_some());
    assert_eq!(order.count.read(), (13, 2));
}
