//! Dispatchers: one consumer group per channel (`herald-dispatch-<channel>`), each member
//! owning some partitions of `herald.channel.<channel>` and of its retry tiers, delivering
//! through a [`Provider`] at most once per delivery (the [`ledger`]), and recording the
//! outcome as a `DeliveryEvent`. A record's offset is stored only once it reached a
//! conclusive place: sent, failed for good, waiting in a retry tier, or dead-lettered.

pub mod config;
mod handler;
pub mod ledger;
pub mod providers;
pub mod retry;

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{AvroProducer, ConsumerSpec, DeadLetters, consumer};
use herald_schemas::Channel;
use tokio_util::sync::CancellationToken;

pub use config::DispatchConfig;
pub use handler::DispatchSetup;
pub use ledger::DeliveryLedger;
pub use providers::registry::Routes;
pub use providers::{DeliveryError, Provider, Sent};

/// Consumer group of a channel's dispatchers.
pub fn group(channel: Channel) -> String {
    format!("herald-dispatch-{channel}")
}

/// Runs the dispatcher of `setup.channel` until `shutdown` is cancelled: it consumes the
/// channel topic and every retry tier of the channel.
pub async fn run<L: DeliveryLedger>(
    kafka: &KafkaConfig,
    setup: DispatchSetup,
    routes: Routes,
    ledger: Arc<L>,
    output: AvroProducer,
    shutdown: CancellationToken,
) -> Result<(), consumer::ConsumerError> {
    let group = group(setup.channel);
    let topics = &setup.topics;
    let dead_letters = DeadLetters::new(output.producer().clone(), topics.dlq(), group.clone());
    let mut inputs = vec![topics.channel(setup.channel)];
    inputs.extend((1..=setup.retry.tiers()).map(|tier| topics.retry(setup.channel, tier)));
    let spec = ConsumerSpec { group_id: group.clone(), topics: inputs, client_id: group };
    let handler =
        Arc::new(handler::DispatchHandler::new(setup, routes, ledger, output, dead_letters));
    consumer::run(kafka, spec, handler, shutdown).await
}
