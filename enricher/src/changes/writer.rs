//! Writing to the directory: changes to `herald.directory.changes` (keyed by user id,
//! partitioned with murmur2 like the Java client, Kafka Connect and Debezium, so that a
//! user's changes from any of them share a partition and stay in order) and whole templates
//! to `herald.templates`.

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{
    Ack, AvroProduceError, AvroProducer, ClientSetupError, ProduceError, Producer,
};
use herald_schemas::{AvroCodec, DirectoryChange, Topics};

use super::TemplateRecord;

/// The partitioner every producer of directory changes uses.
pub const PARTITIONER: &str = "murmur2_random";

#[derive(Debug, Clone)]
pub struct DirectoryWriter {
    changes: AvroProducer,
    templates: Producer,
    topics: Topics,
}

impl DirectoryWriter {
    /// `templates` writes the templates topic as Herald always has (librdkafka's default
    /// partitioner), so that a template's records stay in the partition its first went to.
    pub fn new(
        kafka: &KafkaConfig,
        codec: Arc<AvroCodec>,
        templates: Producer,
        client_id: &str,
    ) -> Result<Self, ClientSetupError> {
        let producer = Producer::with(kafka, client_id, &[("partitioner", PARTITIONER)])?;
        Ok(Self { changes: AvroProducer::new(producer, codec), templates, topics: kafka.topics() })
    }

    /// Enqueues a change; await the [`Ack`] for the broker's acknowledgement and where it
    /// went.
    pub async fn change(&self, change: &DirectoryChange) -> Result<Ack, AvroProduceError> {
        let topic = self.topics.directory_changes();
        self.changes.enqueue(&topic, &change.user_id, change, None).await
    }

    /// Enqueues a user's erasure: a record without a value, which also lets compaction take
    /// the user's earlier changes out of the topic.
    pub async fn erase(&self, user_id: &str) -> Result<Ack, ProduceError> {
        let topic = self.topics.directory_changes();
        self.changes.producer().enqueue_tombstone(&topic, user_id.as_bytes()).await
    }

    /// Enqueues a template whole, or its removal (`None`).
    pub async fn template(
        &self,
        template_id: &str,
        record: Option<&TemplateRecord>,
    ) -> Result<Ack, ProduceError> {
        let topic = self.topics.templates();
        match record {
            Some(record) => {
                let value = serde_json::to_vec(record).unwrap_or_default();
                self.templates.enqueue(&topic, Some(template_id.as_bytes()), &value, None).await
            }
            None => self.templates.enqueue_tombstone(&topic, template_id.as_bytes()).await,
        }
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Waits for everything enqueued, up to `timeout`.
    pub async fn flush(&self, timeout: std::time::Duration) {
        self.changes.producer().flush(timeout).await;
        self.templates.flush(timeout).await;
    }
}
