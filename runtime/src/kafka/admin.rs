//! Topic creation and broker reachability.

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::{ClientSetupError, base_client_config};
use crate::config::KafkaConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    pub config: Vec<(String, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Setup(#[from] ClientSetupError),
    #[error("creating topics failed: {0}")]
    Request(rdkafka::error::KafkaError),
    #[error("creating topic {topic} failed: {code}")]
    Topic { topic: String, code: RDKafkaErrorCode },
    #[error("broker at {servers} not reachable within {waited:?}: {last_error}")]
    Unreachable { servers: String, waited: Duration, last_error: String },
}

/// Creates the topics that do not exist yet; existing topics are left as they are.
pub async fn create_topics(config: &KafkaConfig, topics: &[TopicSpec]) -> Result<(), AdminError> {
    let client: AdminClient<DefaultClientContext> = base_client_config(config, "herald-admin")
        .map_err(ClientSetupError::from)?
        .create()
        .map_err(|source| ClientSetupError::Create { kind: "admin", source })?;
    let new_topics: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            let mut topic =
                NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(t.replication));
            for (key, value) in &t.config {
                topic = topic.set(key, value);
            }
            topic
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = client.create_topics(&new_topics, &options).await.map_err(AdminError::Request)?;
    for result in results {
        match result {
            Ok(name) => tracing::debug!(topic = %name, "topic created"),
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                tracing::debug!(topic = %name, "topic exists")
            }
            Err((topic, code)) => return Err(AdminError::Topic { topic, code }),
        }
    }
    Ok(())
}

/// Waits until the cluster answers a metadata request.
pub async fn wait_until_reachable(
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<(), AdminError> {
    let consumer: BaseConsumer = base_client_config(config, "herald-probe")
        .map_err(ClientSetupError::from)?
        .create()
        .map_err(|source| ClientSetupError::Create { kind: "probe", source })?;
    let servers = config.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            match consumer.fetch_metadata(None, Duration::from_secs(2)) {
                Ok(_) => return Ok(()),
                Err(e) if started.elapsed() >= timeout => {
                    return Err(AdminError::Unreachable {
                        servers,
                        waited: started.elapsed(),
                        last_error: e.to_string(),
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    })
    .await
    .unwrap_or_else(|e| {
        Err(AdminError::Unreachable {
            servers: config.bootstrap_servers.clone(),
            waited: Duration::ZERO,
            last_error: e.to_string(),
        })
    })
}
