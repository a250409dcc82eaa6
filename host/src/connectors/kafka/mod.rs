//! Kafka, through `rskafka` (a pure-Rust, partition-level client: metadata, produce, fetch,
//! list offsets): a source that reads a topic's partitions from the offsets its checkpoint
//! holds ([`source`]), and a sink that produces each checkpoint's records at commit, at least
//! once, each with an id that makes a repeat an exact copy ([`sink`]). Both connect here: a
//! client (brokers, SASL PLAIN credentials from the secret) and the check, with backoff, that
//! a broker answers and the topic exists. No consumer groups, no transactions: the source's
//! position is its checkpoint's, and the brokers this is tested against (tansu 0.6.0) have no
//! transactions (docs/connectors.md).

pub mod partitioner;
pub mod sink;
pub mod source;

use std::time::Duration;

use rskafka::BackoffConfig;
use rskafka::client::partition::{PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};

use super::config::KafkaAuth;
use super::secret::Secret;
use super::{Cause, Chain, Setup, connect_with_backoff};

/// Longest a call to the broker (with its retries) may take before it fails: below
/// [`super::CONNECT_TIMEOUT_MS`], so that a broker that is down is reported with the client's
/// own reason (connection refused), not as a timeout.
pub const CALL_DEADLINE: Duration = Duration::from_millis(4_000);

/// A client of `brokers` for `setup`'s subtask, once a broker answers (with backoff), with the
/// credentials (SASL PLAIN) if the config names them. Never printed: it holds the password.
async fn client(
    setup: &Setup<'_>,
    brokers: &str,
    auth: &Option<KafkaAuth>,
) -> Result<Client, Cause> {
    let url = format!("kafka://{brokers}");
    connect_with_backoff(&url, || {
        let mut builder = ClientBuilder::new(brokers.split(',').map(str::to_owned).collect())
            .client_id(format!("jobhost {}", setup.subtask))
            .backoff_config(backoff());
        if let (Some(auth), Some(password)) = (auth, setup.secret) {
            builder = builder.sasl_config(sasl(auth, password));
        }
        // Boxed: rskafka's nested futures would otherwise make every future that opens a
        // connector (up to a worker's `run`) deeper than rustc's layout limit.
        // Its errors' text already holds their sources: as text, they are said once.
        let built = Box::pin(builder.build());
        async { built.await.map_err(|e| e.to_string()) }
    })
    .await
}

/// Retries of one call: 100 ms apart, doubling up to 1 s, for at most [`CALL_DEADLINE`].
fn backoff() -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(CALL_DEADLINE),
    }
}

fn sasl(auth: &KafkaAuth, password: &Secret) -> SaslConfig {
    let credentials = Credentials::new(auth.user.clone(), password.expose().to_owned());
    SaslConfig::Plain(credentials)
}

/// The number of partitions of `topic`; refuses a topic that does not exist (or has none).
async fn partitions(client: &Client, brokers: &str, topic: &str) -> Result<i32, Cause> {
    let topics = client.list_topics().await;
    let topics = topics.map_err(Cause::kafka("reading the topics' metadata"))?;
    let found = topics.into_iter().find(|t| t.name == topic);
    let count = found.map_or(0, |t| t.partitions.len() as i32);
    if count == 0 {
        return Err(Cause::NoTopic {
            topic: topic.to_owned(),
            brokers: brokers.to_owned(),
        });
    }
    Ok(count)
}

/// A client of partition `partition` of `topic`, connected to its leader.
async fn partition(client: &Client, topic: &str, partition: i32) -> Result<PartitionClient, Cause> {
    let connected = client.partition_client(topic, partition, UnknownTopicHandling::Error);
    connected
        .await
        .map_err(Cause::kafka("connecting to a partition's leader"))
}

impl Cause {
    /// A Kafka failure while `doing`.
    /// rskafka's errors say their sources in their own text: the reason is that text, so that
    /// the chain does not say them twice.
    pub fn kafka(doing: &'static str) -> impl Fn(rskafka::client::error::Error) -> Cause {
        move |error| Cause::Kafka {
            doing,
            reason: Chain(error.to_string().into()),
        }
    }
}
