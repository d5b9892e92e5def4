//! The template ids the directory holds, as the send API knows them: read from the start of
//! the compacted templates topic (written by `herald directory import` and `herald dev`) and
//! kept up while ingest runs, so an unknown `template_id` is a 422 rather than a `failed`
//! event later. Roles do not share databases: this is how the directory's ids reach ingest.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use herald_runtime::KafkaConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Default)]
pub struct TemplateCatalog {
    ids: Arc<RwLock<HashSet<String>>>,
}

impl TemplateCatalog {
    /// Whether a request naming template `id` is refused. With no template announced at all
    /// nothing is: the directory may have been filled another way.
    pub fn refuses(&self, id: &str) -> bool {
        self.ids.read().is_ok_and(|ids| !ids.is_empty() && !ids.contains(id))
    }

    /// A record of the topic: a value announces the id, none (a tombstone) withdraws it.
    pub fn apply(&self, id: &str, present: bool) {
        if let Ok(mut ids) = self.ids.write() {
            if present {
                ids.insert(id.to_owned());
            } else {
                ids.remove(id);
            }
        }
    }
}

/// Why following the templates topic stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error(transparent)]
    Secret(#[from] herald_runtime::config::SecretError),
    #[error("cannot read the templates topic: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Reads the templates topic into `catalog` from its start until `shutdown`.
pub async fn follow(
    kafka: &KafkaConfig,
    catalog: TemplateCatalog,
    shutdown: CancellationToken,
) -> Result<(), FollowError> {
    let mut client = ClientConfig::new();
    for (key, value) in kafka.client_properties()? {
        client.set(key, value);
    }
    // Assigned, not subscribed: every ingest reads every partition and commits nothing.
    let consumer: Arc<StreamConsumer> = Arc::new(
        client
            .set("group.id", kafka.group("ingest-templates"))
            .set("enable.auto.commit", "false")
            .create()?,
    );
    let topic = kafka.topics().templates();
    loop {
        let (probe, name) = (Arc::clone(&consumer), topic.clone());
        let metadata = tokio::task::spawn_blocking(move || {
            probe.fetch_metadata(Some(&name), Duration::from_secs(5))
        })
        .await;
        let partitions: Vec<i32> = match metadata {
            Ok(Ok(m)) => {
                m.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect()
            }
            _ => Vec::new(),
        };
        if !partitions.is_empty() {
            let mut assignment = TopicPartitionList::new();
            for partition in partitions {
                assignment.add_partition_offset(&topic, partition, Offset::Beginning)?;
            }
            consumer.assign(&assignment)?;
            break;
        }
        tracing::debug!(%topic, "templates topic not there yet");
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            () = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            received = consumer.recv() => received,
        };
        match received {
            Ok(message) => {
                if let Some(id) = message.key().and_then(|k| std::str::from_utf8(k).ok()) {
                    catalog.apply(id, message.payload().is_some_and(|p| !p.is_empty()));
                }
            }
            Err(e) => tracing::warn!(error = %e, "reading the templates topic"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_template_is_refused_once_any_is_known_and_a_tombstone_withdraws_one() {
        let catalog = TemplateCatalog::default();
        assert!(!catalog.refuses("otp"), "nothing announced: nothing refused");
        catalog.apply("otp", true);
        assert!(!catalog.refuses("otp"));
        assert!(catalog.refuses("welcome"));
        catalog.apply("welcome", true);
        catalog.apply("otp", false);
        assert!(catalog.refuses("otp"));
    }
}
