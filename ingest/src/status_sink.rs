//! The status sink: consumes `herald.events` (group `herald-status-sink`) into the status
//! store that `GET /v1/notifications/{id}` reads.

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{
    ConsumerSpec, DeadLetters, ErrorClass, Handler, HandlerError, Message, OwnedMessage, consumer,
};
use herald_schemas::{AvroCodec, DeliveryEvent};
use tokio_util::sync::CancellationToken;

use crate::status::StatusStore;

pub const GROUP: &str = "herald-status-sink";

struct StatusSink {
    store: StatusStore,
    codec: Arc<AvroCodec>,
    dead_letters: DeadLetters,
}

impl Handler for StatusSink {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        match self.codec.decode::<DeliveryEvent>(record.payload()).await {
            Ok(event) => self.store.record(vec![event]).await.map_err(HandlerError::new),
            Err(e) if e.is_retryable() => Err(HandlerError::new(e)),
            Err(e) => self
                .dead_letters
                .send(record, ErrorClass::Poison, &e.to_string())
                .await
                .map_err(HandlerError::new),
        }
    }
}

/// Runs the status sink until `shutdown` is cancelled.
pub async fn run(
    kafka: &KafkaConfig,
    store: StatusStore,
    codec: Arc<AvroCodec>,
    producer: herald_runtime::kafka::Producer,
    shutdown: CancellationToken,
) -> Result<(), consumer::ConsumerError> {
    let topics = kafka.topics();
    let dead_letters = DeadLetters::new(producer, topics.dlq(), GROUP);
    let spec = ConsumerSpec {
        group_id: GROUP.into(),
        topics: vec![topics.events()],
        client_id: GROUP.into(),
    };
    consumer::run(kafka, spec, Arc::new(StatusSink { store, codec, dead_letters }), shutdown).await
}
