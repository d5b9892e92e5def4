//! Dispatchers: one consumer group per channel (`herald-dispatch-<channel>`), each member
//! owning some partitions of `herald.channel.<channel>`, delivering through a [`Provider`]
//! and recording the outcome as a `DeliveryEvent`. A record's offset is stored only once it
//! reached a conclusive place: delivered, failed for good, or handed to the dead-letter topic.

pub mod config;
pub mod email;
mod handler;
pub mod provider;

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{AvroProducer, ConsumerSpec, DeadLetters, consumer};
use herald_schemas::Channel;
use tokio_util::sync::CancellationToken;

pub use config::DispatchConfig;
pub use provider::{DeliveryError, Provider, Sent};

/// Consumer group of a channel's dispatchers.
pub fn group(channel: Channel) -> String {
    format!("herald-dispatch-{channel}")
}

/// Runs the dispatcher of `channel` with `provider` until `shutdown` is cancelled.
pub async fn run<P: Provider>(
    kafka: &KafkaConfig,
    channel: Channel,
    provider: Arc<P>,
    output: AvroProducer,
    shutdown: CancellationToken,
) -> Result<(), consumer::ConsumerError> {
    let topics = kafka.topics();
    let group = group(channel);
    let dead_letters = DeadLetters::new(output.producer().clone(), topics.dlq(), group.clone());
    let handler = Arc::new(handler::DispatchHandler::new(
        channel,
        provider,
        output,
        dead_letters,
        topics.events(),
    ));
    let spec = ConsumerSpec {
        group_id: group.clone(),
        topics: vec![topics.channel(channel)],
        client_id: group,
    };
    consumer::run(kafka, spec, handler, shutdown).await
}
