//! The dead-letter topic: records that cannot be decoded or delivered, with the reason in
//! headers, so the partition they came from moves on and nothing is lost.

use rdkafka::message::{Message, OwnedMessage};

use super::producer::{ProduceError, Producer};
use herald_schemas::headers;

/// How a failure was classified before it was routed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The record itself is bad: undecodable, unknown schema, missing fields. Never retried.
    Poison,
    /// The provider refused for good (invalid address, rejected payload).
    Permanent,
    /// Could have worked later, but every retry was used up.
    RetriesExhausted,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Poison => "poison",
            ErrorClass::Permanent => "permanent",
            ErrorClass::RetriesExhausted => "retries_exhausted",
        }
    }
}

#[derive(Debug, Clone)]
pub struct DeadLetters {
    producer: Producer,
    topic: String,
    group: String,
}

impl DeadLetters {
    /// The record decoded, or `None` once an undecodable one is in the dead-letter topic; an
    /// unreachable registry is the handler's error, to be retried.
    pub async fn decode_or_dead_letter<R: herald_schemas::Record>(
        &self,
        codec: &herald_schemas::AvroCodec,
        record: &OwnedMessage,
    ) -> Result<Option<R>, super::HandlerError> {
        match codec.decode::<R>(record.payload()).await {
            Ok(decoded) => Ok(Some(decoded)),
            Err(e) if e.is_retryable() => Err(super::HandlerError::new(e)),
            Err(e) => self
                .send(record, ErrorClass::Poison, &e.to_string())
                .await
                .map(|()| None)
                .map_err(super::HandlerError::new),
        }
    }

    /// `group` names the consumer group that gives up on records, for the failed-group header.
    pub fn new(producer: Producer, topic: String, group: impl Into<String>) -> Self {
        Self { producer, topic, group: group.into() }
    }

    /// Copies `original` (key, payload, headers) to the dead-letter topic with the failure in
    /// headers; returns once the broker acknowledged.
    pub async fn send(
        &self,
        original: &OwnedMessage,
        class: ErrorClass,
        reason: &str,
    ) -> Result<(), ProduceError> {
        const REPLACED: [&str; 4] = [
            headers::ERROR_CLASS,
            headers::ERROR_REASON,
            headers::FAILED_GROUP,
            headers::FAILED_AT,
        ];
        let partition = original.partition().to_string();
        let offset = original.offset().to_string();
        let failed_at = herald_schemas::now_millis().to_string();
        let mut set = vec![
            (headers::ERROR_CLASS, class.as_str()),
            (headers::ERROR_REASON, reason),
            (headers::FAILED_GROUP, self.group.as_str()),
            (headers::FAILED_AT, failed_at.as_str()),
        ];
        // A record from a retry tier already names where it first came from.
        if super::header_str(original, headers::ORIGINAL_TOPIC).is_none() {
            set.extend([
                (headers::ORIGINAL_TOPIC, original.topic()),
                (headers::ORIGINAL_PARTITION, partition.as_str()),
                (headers::ORIGINAL_OFFSET, offset.as_str()),
            ]);
        }
        let out = super::headers_replacing(original, &REPLACED, &set);
        let payload = original.payload().unwrap_or_default();
        self.producer.send(&self.topic, original.key(), payload, Some(out)).await?;
        crate::metrics::dead_lettered(&self.group, class.as_str());
        tracing::warn!(
            group = %self.group, class = class.as_str(), reason,
            topic = original.topic(), partition = original.partition(), offset = original.offset(),
            "record dead-lettered"
        );
        Ok(())
    }
}
