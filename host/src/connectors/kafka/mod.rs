//! Kafka, through librdkafka (`rdkafka`): a source that reads a topic's partitions from the
//! offsets its checkpoint holds ([`source`]), and a sink that produces each checkpoint's
//! records in one Kafka transaction at commit ([`sink`]). Both connect here: a client's
//! configuration (brokers, SASL PLAIN credentials from the secret) and the check, with
//! backoff, that the broker answers and the topic exists.
//!
//! librdkafka's calls block (metadata, transactions): they run on tokio's blocking threads,
//! never on the runtime's own.

pub mod sink;
pub mod source;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::time::Duration;

use super::config::KafkaAuth;
use super::secret::Secret;
use super::{Cause, Chain, Setup, connect_with_backoff};

/// Longest one blocking call to the broker may take (metadata, a transaction's step).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a metadata request may take while connecting (below [`super::CONNECT_TIMEOUT_MS`]).
const METADATA_TIMEOUT: Duration = Duration::from_millis(4_000);

/// A client's configuration for `setup`'s subtask: the brokers, its name, and the credentials
/// (SASL PLAIN) if the config names them. Never printed: it holds the password.
fn client_config(setup: &Setup<'_>, brokers: &str, auth: &Option<KafkaAuth>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("client.id", format!("jobhost {}", setup.subtask))
        // librdkafka logs through the client's log callback, which this host does not route:
        // errors come back from the calls.
        .set("log_level", "0");
    if let (Some(auth), Some(password)) = (auth, setup.secret) {
        with_password(&mut config, auth, password);
    }
    config
}

fn with_password(config: &mut ClientConfig, auth: &KafkaAuth, password: &Secret) {
    config
        .set("security.protocol", "SASL_PLAINTEXT")
        .set("sasl.mechanism", "PLAIN")
        .set("sasl.username", &auth.user)
        .set("sasl.password", password.expose());
}

/// A consumer of `config` (no group commits, no topic created by asking for its metadata).
fn consumer(mut config: ClientConfig, group: &str) -> Result<BaseConsumer, Cause> {
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("allow.auto.create.topics", "false")
        .set("isolation.level", "read_committed");
    config.create().map_err(Cause::kafka("creating a client"))
}

/// The number of partitions of `topic`, once a broker of `brokers` answers (with backoff),
/// asked through `consumer`; refuses a topic that does not exist.
async fn partitions(
    consumer: &std::sync::Arc<BaseConsumer>,
    brokers: &str,
    topic: &str,
) -> Result<i32, Cause> {
    let url = format!("kafka://{brokers}");
    let metadata = connect_with_backoff(&url, || {
        let (consumer, topic) = (consumer.clone(), topic.to_owned());
        async move {
            let asked = move || consumer.fetch_metadata(Some(&topic), METADATA_TIMEOUT);
            let joined = tokio::task::spawn_blocking(asked).await;
            joined.expect("a metadata request does not panic")
        }
    })
    .await?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    let no_topic = || Cause::NoTopic {
        topic: topic.to_owned(),
        brokers: brokers.to_owned(),
    };
    let found = found.ok_or_else(no_topic)?;
    match found.error() {
        None if !found.partitions().is_empty() => Ok(found.partitions().len() as i32),
        None => Err(no_topic()),
        Some(code) if RDKafkaErrorCode::from(code) == RDKafkaErrorCode::UnknownTopicOrPartition => {
            Err(no_topic())
        }
        Some(code) => Err(Cause::kafka("reading the topic's metadata")(
            KafkaError::MetadataFetch(code.into()),
        )),
    }
}

impl Cause {
    /// A Kafka failure while `doing`.
    pub fn kafka(doing: &'static str) -> impl Fn(KafkaError) -> Cause {
        move |error| Cause::Kafka {
            doing,
            reason: Chain::of(error),
        }
    }
}
