//! Kafka plumbing: clients configured from [`KafkaConfig`](crate::KafkaConfig), an ordered
//! consumer runtime, an idempotent producer, dead letters and topic administration.

pub mod acl;
pub mod admin;
pub mod apply;
pub mod avro_producer;
pub mod consumer;
pub mod dead_letter;
pub mod group_offsets;
mod offset_tracker;
pub mod producer;
pub mod replay_mark;
pub mod retry_marks;

use rdkafka::ClientConfig;

use crate::config::{KafkaConfig, SecretError};

pub use avro_producer::{AvroProduceError, AvroProducer, wait_all};
pub use consumer::{ConsumerError, ConsumerSpec, Durable, Handler, HandlerError};
pub use dead_letter::{DeadLetters, ErrorClass};
pub use producer::{Ack, ProduceError, Producer};
pub use rdkafka::Timestamp;
pub use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
pub use replay_mark::ReplayMark;
pub use retry_marks::{attempt, due_at};

/// Whether an operator's command changes the cluster, or only shows what it would change
/// (`--dry-run`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeMode {
    DryRun,
    Apply,
}

impl ChangeMode {
    /// The mode a command line's `--dry-run` flag asks for.
    pub fn from_dry_run(dry_run: bool) -> Self {
        if dry_run { Self::DryRun } else { Self::Apply }
    }

    pub fn is_dry_run(self) -> bool {
        self == Self::DryRun
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientSetupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot create the Kafka {kind} client: {source}")]
    Create { kind: &'static str, source: rdkafka::error::KafkaError },
}

pub(crate) fn base_client_config(
    config: &KafkaConfig,
    client_id: &str,
) -> Result<ClientConfig, SecretError> {
    let mut client = ClientConfig::new();
    client.set("client.id", client_id);
    // rdkafka takes its level from the `log` crate, which nothing here configures: take it
    // from the `tracing` filter instead, so that `RUST_LOG=librdkafka=debug` (with the
    // `debug` property) shows what librdkafka says.
    client.set_log_level(rdkafka_log_level(tracing::level_filters::LevelFilter::current()));
    for (key, value) in config.client_properties()? {
        client.set(key, value);
    }
    Ok(client)
}

/// A consumer of partitions it is assigned, in no group and committing nothing: for a role
/// that reads a topic whole (a catalog, the directory's changes) in every process.
pub fn reader(
    config: &KafkaConfig,
    client_id: &str,
) -> Result<rdkafka::consumer::BaseConsumer<producer::LogContext>, ClientSetupError> {
    let mut client = base_client_config(config, client_id)?;
    client
        .set("group.id", client_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed");
    client
        .create_with_context(producer::LogContext)
        .map_err(|source| ClientSetupError::Create { kind: "consumer", source })
}

/// A partition's low and high watermarks, asking again while its leader cannot answer yet
/// (a topic just created, an election under way), for at most `timeout`: librdkafka gives
/// up on the first "not leader" answer, which would fail an operator's command for a
/// moment's transition.
pub fn watermarks<C, K>(
    consumer: &K,
    topic: &str,
    partition: i32,
    timeout: std::time::Duration,
) -> rdkafka::error::KafkaResult<(i64, i64)>
where
    C: rdkafka::consumer::ConsumerContext,
    K: rdkafka::consumer::Consumer<C>,
{
    use rdkafka::error::{KafkaError, RDKafkaErrorCode as Code};
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match consumer.fetch_watermarks(topic, partition, left) {
            Err(KafkaError::MetadataFetch(
                Code::NotLeaderForPartition
                | Code::LeaderNotAvailable
                | Code::UnknownTopicOrPartition,
            )) if std::time::Instant::now() + std::time::Duration::from_millis(100) < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            answer => return answer,
        }
    }
}

/// Reads a UTF-8 header value, the first one with that name.
pub fn header_str<'m>(message: &'m impl Message, name: &str) -> Option<&'m str> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

/// The record's headers without those named in `dropped`, followed by `set`: what a record
/// carries to its next stop (a retry tier, the dead-letter topic, a replay).
pub fn headers_replacing(
    record: &impl Message,
    dropped: &[&str],
    set: &[(&str, &str)],
) -> OwnedHeaders {
    let mut out = OwnedHeaders::new();
    if let Some(existing) = record.headers() {
        for header in existing.iter().filter(|h| !dropped.contains(&h.key)) {
            out = out.insert(header);
        }
    }
    for &(key, value) in set {
        out = out.insert(Header { key, value: Some(value) });
    }
    out
}

/// The librdkafka level that lets through what `filter` lets through.
fn rdkafka_log_level(
    filter: tracing::level_filters::LevelFilter,
) -> rdkafka::config::RDKafkaLogLevel {
    use rdkafka::config::RDKafkaLogLevel as L;
    use tracing::level_filters::LevelFilter as F;
    if filter >= F::DEBUG {
        L::Debug
    } else if filter >= F::INFO {
        L::Info
    } else if filter >= F::WARN {
        L::Warning
    } else {
        L::Error
    }
}

/// librdkafka's own log lines, routed into `tracing`.
pub(crate) fn log_to_tracing(level: rdkafka::config::RDKafkaLogLevel, fac: &str, message: &str) {
    use rdkafka::config::RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", fac, "{message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", fac, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", fac, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", fac, "{message}"),
    }
}
