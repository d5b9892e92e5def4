//! The status sink: consumes `herald.events` (group `herald-status-sink`) into the status
//! store that `GET /v1/notifications/{id}` reads.

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{
    ConsumerSpec, DeadLetters, Handler, HandlerError, OwnedMessage, consumer,
};
use herald_schemas::{AvroCodec, DeliveryEvent};
use tokio_util::sync::CancellationToken;

use crate::status::StatusStore;

pub const GROUP: &str = "status-sink";

struct StatusSink {
    store: StatusStore,
    codec: Arc<AvroCodec>,
    dead_letters: DeadLetters,
}

fn events_total() -> &'static prometheus::IntCounterVec {
    static EVENTS: std::sync::OnceLock<prometheus::IntCounterVec> = std::sync::OnceLock::new();
    EVENTS.get_or_init(|| {
        herald_runtime::metrics::counter_vec(
            "herald_events_total",
            "Delivery events stored by the status sink, by kind (accepted, routed, sent, delivered, opened, clicked, failed, ...).",
            &["kind"],
        )
    })
}

pub(crate) fn define_metrics() {
    let _ = events_total();
}

impl Handler for StatusSink {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        match self.dead_letters.decode_or_dead_letter::<DeliveryEvent>(&self.codec, record).await? {
            Some(event) => {
                let kind = event.kind.as_str();
                self.store.record(vec![event]).await.map_err(HandlerError::new)?;
                events_total().with_label_values(&[kind]).inc();
                Ok(())
            }
            None => Ok(()),
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
    let group = kafka.group(GROUP);
    let dead_letters = DeadLetters::new(producer, topics.dlq(), &group);
    let spec =
        ConsumerSpec { group_id: group.clone(), topics: vec![topics.events()], client_id: group };
    consumer::run(kafka, spec, Arc::new(StatusSink { store, codec, dead_letters }), shutdown).await
}
