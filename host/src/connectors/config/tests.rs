use super::*;

fn table(text: &str) -> toml::Table {
    toml::from_str(text).unwrap()
}

fn parse(kind: ConnectorKind, role: Role, text: &str) -> Result<ConnectorConfig, ConfigError> {
    ConnectorConfig::parse(kind, role, 1, &table(text))
}

#[test]
fn a_postgres_sink_reads_its_url_table_mode_and_where_its_password_is() {
    let config = parse(
        ConnectorKind::Postgres,
        Role::Sink,
        "url = \"postgres://jobhost@127.0.0.1:5432/db\"\ntable = \"public.counts\"\n\
         mode = \"upsert\"\npassword_file = \"pw\"",
    )
    .unwrap()
    .resolved_against(Path::new("/jobs"));
    let ConnectorConfig::PostgresSink(sink) = &config else {
        panic!("{config:?}")
    };
    assert_eq!(sink.mode, PostgresMode::Upsert);
    assert_eq!(sink.password, Some(SecretRef::File("/jobs/pw".into())));
    assert!(config.needs_keyed_input());
}

#[test]
fn secrets_in_the_job_file_are_refused() {
    let in_url = parse(
        ConnectorKind::Postgres,
        Role::Sink,
        "url = \"postgres://jobhost:hunter2@127.0.0.1/db\"\ntable = \"t\"",
    );
    assert_eq!(in_url, Err(ConfigError::SecretInUrl));
    let in_url = parse(
        ConnectorKind::Nats,
        Role::Source,
        "url = \"nats://me:hunter2@127.0.0.1:4222\"\nstream = \"S\"",
    );
    assert_eq!(in_url, Err(ConfigError::SecretInUrl));
    let inline = parse(
        ConnectorKind::Postgres,
        Role::Sink,
        "url = \"postgres://u@h/db\"\ntable = \"t\"\npassword = \"hunter2\"",
    );
    let error = inline.unwrap_err();
    assert_eq!(error, ConfigError::SecretInJobFile { key: "password" });
    assert!(!error.to_string().contains("hunter2"));
}

#[test]
fn unknown_keys_roles_and_names_are_refused_naming_them() {
    let unknown = parse(
        ConnectorKind::Nats,
        Role::Source,
        "url = \"nats://127.0.0.1\"\nstream = \"S\"\nstop_at_edn = true",
    );
    assert!(
        unknown.unwrap_err().to_string().contains("stop_at_edn"),
        "the unknown key is named"
    );
    let role = parse(ConnectorKind::Postgres, Role::Source, "");
    assert_eq!(
        role.unwrap_err().to_string(),
        "the postgres connector has no source (it has: sink)"
    );
    let table = parse(
        ConnectorKind::Postgres,
        Role::Sink,
        "url = \"postgres://u@h/db\"\ntable = \"t; drop table x\"",
    );
    assert!(matches!(table, Err(ConfigError::TableName(_))));
    let stream = parse(
        ConnectorKind::Nats,
        Role::Sink,
        "url = \"nats://h\"\nstream = \"a.b\"\nsubject = \"s\"",
    );
    assert!(matches!(
        stream,
        Err(ConfigError::NatsName { key: "stream", .. })
    ));
}

#[test]
fn a_source_takes_no_more_subtasks_than_subject_filters() {
    let text = "url = \"nats://h\"\nstream = \"S\"\nsubjects = [\"a\", \"b\"]";
    let two = ConnectorConfig::parse(ConnectorKind::Nats, Role::Source, 2, &table(text));
    assert!(two.is_ok());
    let three = ConnectorConfig::parse(ConnectorKind::Nats, Role::Source, 3, &table(text));
    assert_eq!(
        three,
        Err(ConfigError::ParallelismAboveSubjects {
            parallelism: 3,
            filters: 2
        })
    );
}

#[test]
fn a_nats_sink_defaults_its_duplicate_window_and_pairs_user_with_password() {
    let config = parse(
        ConnectorKind::Nats,
        Role::Sink,
        "url = \"nats://h\"\nstream = \"S\"\nsubject = \"out\"\nuser = \"me\"\npassword_env = \"PW\"",
    )
    .unwrap();
    let ConnectorConfig::NatsSink(sink) = &config else {
        panic!("{config:?}")
    };
    assert_eq!(
        sink.duplicate_window_min_ms,
        DUPLICATE_WINDOW_MIN_MS_DEFAULT
    );
    assert_eq!(config.secret(), Some(&SecretRef::Env("PW".to_owned())));
    let lone_user = parse(
        ConnectorKind::Nats,
        Role::Sink,
        "url = \"nats://h\"\nstream = \"S\"\nsubject = \"out\"\nuser = \"me\"",
    );
    assert!(matches!(lone_user, Err(ConfigError::Secret(_))));
}

#[test]
fn a_kafka_source_and_sink_read_their_brokers_topic_and_credentials() {
    let source = parse(
        ConnectorKind::Kafka,
        Role::Source,
        "brokers = \"127.0.0.1:9092,k2:9093\"\ntopic = \"in.lines-1\"\nstop_at_end = true\n\
         user = \"jobhost\"\npassword_file = \"pw\"",
    )
    .unwrap()
    .resolved_against(Path::new("/jobs"));
    let ConnectorConfig::KafkaSource(read) = &source else {
        panic!("{source:?}")
    };
    assert!(read.stop_at_end);
    assert_eq!(source.secret(), Some(&SecretRef::File("/jobs/pw".into())));
    let sink = parse(
        ConnectorKind::Kafka,
        Role::Sink,
        "brokers = \"127.0.0.1:9092\"\ntopic = \"out\"",
    );
    let Ok(ConnectorConfig::KafkaSink(sink)) = sink else {
        panic!("{sink:?}")
    };
    assert_eq!(sink.topic, "out");
    assert_eq!(sink.auth, None);
}

#[test]
fn a_kafka_connectors_bad_brokers_topic_keys_and_secrets_are_refused_naming_them() {
    let kafka = |role, text: &str| parse(ConnectorKind::Kafka, role, text);
    let brokers = kafka(Role::Source, "brokers = \"127.0.0.1\"\ntopic = \"t\"");
    assert_eq!(brokers, Err(ConfigError::Brokers("127.0.0.1".to_owned())));
    let in_brokers = kafka(Role::Sink, "brokers = \"me:pw@h:1\"\ntopic = \"t\"");
    assert_eq!(
        in_brokers,
        Err(ConfigError::Brokers("me:pw@h:1".to_owned()))
    );
    let topic = kafka(Role::Source, "brokers = \"h:1\"\ntopic = \"a b\"");
    assert_eq!(topic, Err(ConfigError::TopicName("a b".to_owned())));
    let prefix = kafka(
        Role::Sink,
        "brokers = \"h:1\"\ntopic = \"t\"\ntransactional_id_prefix = \"p\"",
    );
    // No transactions (docs/connectors.md): the key of the former transactional sink is refused.
    assert!(matches!(prefix, Err(ConfigError::Table(m)) if m.contains("transactional_id_prefix")));
    let stop = kafka(
        Role::Sink,
        "brokers = \"h:1\"\ntopic = \"t\"\nstop_at_end = true",
    );
    assert!(matches!(stop, Err(ConfigError::Table(m)) if m.contains("stop_at_end")));
    let inline = kafka(
        Role::Sink,
        "brokers = \"h:1\"\ntopic = \"t\"\npassword = \"hunter2\"",
    );
    assert_eq!(
        inline,
        Err(ConfigError::SecretInJobFile { key: "password" })
    );
    let alone = kafka(
        Role::Sink,
        "brokers = \"h:1\"\ntopic = \"t\"\npassword_env = \"X\"",
    );
    assert!(matches!(alone, Err(ConfigError::Secret(_))));
}
