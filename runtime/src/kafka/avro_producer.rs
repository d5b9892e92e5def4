//! Producing Avro records in the Confluent wire format.

use std::sync::Arc;

use herald_schemas::codec::EncodeError;
use herald_schemas::{AvroCodec, Record};
use rdkafka::message::OwnedHeaders;

use super::producer::{Ack, ProduceError, Producer};

#[derive(Debug, thiserror::Error)]
pub enum AvroProduceError {
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Produce(#[from] ProduceError),
}

/// A producer plus the codec: what every role writes its outputs with.
#[derive(Debug, Clone)]
pub struct AvroProducer {
    producer: Producer,
    codec: Arc<AvroCodec>,
}

impl AvroProducer {
    pub fn new(producer: Producer, codec: Arc<AvroCodec>) -> Self {
        Self { producer, codec }
    }

    pub fn producer(&self) -> &Producer {
        &self.producer
    }

    pub fn codec(&self) -> &AvroCodec {
        &self.codec
    }

    pub fn codec_handle(&self) -> Arc<AvroCodec> {
        Arc::clone(&self.codec)
    }

    /// Encodes and enqueues `record`; await the returned [`Ack`] for the broker's answer.
    pub async fn enqueue<R: Record>(
        &self,
        topic: &str,
        key: &str,
        record: &R,
        headers: Option<OwnedHeaders>,
    ) -> Result<Ack, AvroProduceError> {
        let payload = self.codec.encode(topic, record).await?;
        Ok(self.producer.enqueue(topic, Some(key.as_bytes()), &payload, headers).await?)
    }
}

/// Waits for every acknowledgement; the first failure is returned after all settled, so no
/// acknowledgement is left unobserved.
pub async fn wait_all(acks: Vec<Ack>) -> Result<(), ProduceError> {
    let mut first_error = None;
    for result in futures::future::join_all(acks.into_iter().map(Ack::wait)).await {
        if let Err(e) = result {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}
