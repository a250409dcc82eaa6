//! A Kafka connector's table as written, and its checks: the brokers, the topic, the
//! credentials, each role's own keys.

use std::path::PathBuf;

use serde::Deserialize;

use super::{ConfigError, KafkaAuth, KafkaSink, KafkaSource, secret};

/// The keys of a Kafka connector's table as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct KafkaTable {
    brokers: String,
    topic: String,
    /// A source's.
    stop_at_end: Option<bool>,
    user: Option<String>,
    password_env: Option<String>,
    password_file: Option<PathBuf>,
}

impl KafkaTable {
    /// Its brokers and topic, checked, and its credentials.
    fn common(&mut self) -> Result<Option<KafkaAuth>, ConfigError> {
        let broker = |b: &str| {
            b.rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        };
        if self.brokers.contains('@') || !self.brokers.split(',').all(broker) {
            return Err(ConfigError::Brokers(self.brokers.clone()));
        }
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        let topic = &self.topic;
        if topic.is_empty() || topic.len() > 249 || !topic.chars().all(plain) {
            return Err(ConfigError::TopicName(topic.clone()));
        }
        let password = secret(
            self.password_env.take(),
            self.password_file.take(),
            "give `password_env` or `password_file`, not both",
        )?;
        match (self.user.take(), password) {
            (None, None) => Ok(None),
            (Some(user), Some(password)) => Ok(Some(KafkaAuth { user, password })),
            _ => Err(ConfigError::Secret(
                "`user` needs a password (`password_env` or `password_file`), and a password a `user`",
            )),
        }
    }
}

pub(super) fn kafka_source(mut t: KafkaTable) -> Result<KafkaSource, ConfigError> {
    let auth = t.common()?;
    Ok(KafkaSource {
        brokers: t.brokers,
        topic: t.topic,
        stop_at_end: t.stop_at_end.unwrap_or(false),
        auth,
    })
}

pub(super) fn kafka_sink(mut t: KafkaTable) -> Result<KafkaSink, ConfigError> {
    if t.stop_at_end.is_some() {
        return Err(ConfigError::Table(
            "a Kafka sink takes no `stop_at_end`".to_owned(),
        ));
    }
    let auth = t.common()?;
    Ok(KafkaSink {
        brokers: t.brokers,
        topic: t.topic,
        auth,
    })
}
