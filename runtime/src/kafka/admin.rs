//! Topic creation and broker reachability.

use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
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
    #[error("{what} failed: {source}")]
    Operation { what: &'static str, source: rdkafka::error::KafkaError },
    #[error("creating topic {topic} failed: {code}")]
    Topic { topic: String, code: RDKafkaErrorCode },
    #[error("Kafka at {servers} not reachable within {waited:?}: {last_error}")]
    Unreachable { servers: String, waited: Duration, last_error: String },
    #[error("Kafka at {servers} refused this client: {reason}")]
    Refused { servers: String, reason: String },
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
    wait_until_visible(config, topics).await
}

/// Waits until metadata shows every topic of `topics` with its partitions: Kafka answers
/// CreateTopics once its controller has them, and the brokers learn of them a moment later;
/// a client asking in between would be told they do not exist.
pub(crate) async fn wait_until_visible(
    config: &KafkaConfig,
    topics: &[TopicSpec],
) -> Result<(), AdminError> {
    let probe: BaseConsumer = base_client_config(config, "herald-admin")
        .map_err(ClientSetupError::from)?
        .create()
        .map_err(|source| ClientSetupError::Create { kind: "probe", source })?;
    let wanted: Vec<(String, i32)> =
        topics.iter().map(|t| (t.name.clone(), t.partitions)).collect();
    let servers = config.bootstrap_servers.clone();
    let waited = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let missing = match probe.fetch_metadata(None, Duration::from_secs(5)) {
                Ok(metadata) => wanted
                    .iter()
                    .filter(|(name, partitions)| {
                        !metadata.topics().iter().any(|t| {
                            t.name() == name
                                && t.error().is_none()
                                && t.partitions().len() >= usize::try_from(*partitions).unwrap_or(0)
                        })
                    })
                    .map(|(name, _)| name.clone())
                    .collect(),
                Err(e) => vec![e.to_string()],
            };
            if missing.is_empty() {
                return Ok(());
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(missing.join(", "));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await;
    match waited {
        Ok(Ok(())) => Ok(()),
        Ok(Err(missing)) => Err(AdminError::Unreachable {
            servers,
            waited: Duration::from_secs(30),
            last_error: format!("created topics not visible yet: {missing}"),
        }),
        Err(e) => Err(AdminError::Unreachable {
            servers,
            waited: Duration::ZERO,
            last_error: e.to_string(),
        }),
    }
}

/// Waits until the cluster answers a metadata request, for at most `timeout`; gives up at
/// once when the client reports what waiting cannot cure (refused credentials, a TLS
/// handshake that fails), naming it. Every role calls this before it starts: a wrong
/// password must stop the process with its reason, not leave it retrying in silence.
pub async fn wait_until_reachable(
    config: &KafkaConfig,
    timeout: Duration,
) -> Result<(), AdminError> {
    let watch = ErrorWatch::default();
    let consumer: BaseConsumer<ErrorWatch> = base_client_config(config, "herald-probe")
        .map_err(ClientSetupError::from)?
        .create_with_context(watch)
        .map_err(|source| ClientSetupError::Create { kind: "probe", source })?;
    let servers = config.bootstrap_servers.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        loop {
            let attempt = consumer.fetch_metadata(None, Duration::from_secs(1));
            // Errors reach the context only while its queue is served.
            let _ = consumer.poll(Duration::ZERO);
            let seen = consumer.context().last();
            match (attempt, seen) {
                (Ok(_), _) => return Ok(()),
                (Err(_), Some((code, reason))) if refused(code) => {
                    return Err(AdminError::Refused { servers, reason });
                }
                (Err(e), seen) if started.elapsed() >= timeout => {
                    return Err(AdminError::Unreachable {
                        servers,
                        waited: started.elapsed(),
                        last_error: seen.map_or_else(|| e.to_string(), |(_, reason)| reason),
                    });
                }
                (Err(_), _) => std::thread::sleep(Duration::from_millis(200)),
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

/// Client errors that retrying does not cure.
fn refused(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SaslAuthenticationFailed
            | RDKafkaErrorCode::SSL
    )
}

/// The last error a client reported through its error callback (a failed connection,
/// refused credentials): librdkafka tells these only there.
#[derive(Default)]
struct ErrorWatch {
    last: std::sync::Mutex<Option<(RDKafkaErrorCode, String)>>,
}

impl ErrorWatch {
    fn last(&self) -> Option<(RDKafkaErrorCode, String)> {
        self.last.lock().map_or(None, |last| last.clone())
    }
}

impl rdkafka::consumer::ConsumerContext for ErrorWatch {}

impl ClientContext for ErrorWatch {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::log_to_tracing(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((code, reason.to_owned()));
        }
    }
}

/// Records in `topic` now (sum over partitions of high minus low watermark).
pub fn topic_depth(
    consumer: &BaseConsumer,
    topic: &str,
) -> Result<i64, rdkafka::error::KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(5))?;
    let mut depth = 0;
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = super::watermarks(consumer, topic, p.id(), Duration::from_secs(5))?;
            depth += (high - low).max(0);
        }
    }
    Ok(depth)
}

/// Keeps `herald_topic_records{topic}` current for `topic` (every 15 s) until `shutdown`:
/// how the dead-letter topic's depth reaches dashboards and alerts.
pub async fn track_depth(
    config: KafkaConfig,
    topic: String,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let gauge = crate::metrics::topic_depth_gauge();
    let consumer: BaseConsumer =
        match base_client_config(&config, "herald-depth").map(|c| c.create()) {
            Ok(Ok(consumer)) => consumer,
            Ok(Err(e)) => return tracing::warn!(error = %e, "cannot create the depth probe"),
            Err(e) => return tracing::warn!(error = %e, "cannot create the depth probe"),
        };
    let consumer = std::sync::Arc::new(consumer);
    let mut tick = tokio::time::interval(Duration::from_secs(15));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let (probe, name) = (std::sync::Arc::clone(&consumer), topic.clone());
        match tokio::task::spawn_blocking(move || topic_depth(&probe, &name)).await {
            Ok(Ok(depth)) => gauge.with_label_values(&[&topic]).set(depth),
            Ok(Err(e)) => tracing::debug!(error = %e, topic, "topic depth unavailable"),
            Err(e) => tracing::debug!(error = %e, "topic depth probe failed"),
        }
    }
}
