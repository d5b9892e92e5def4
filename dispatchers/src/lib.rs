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
pub mod routes;

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{AvroProducer, ConsumerSpec, DeadLetters, consumer};
use herald_schemas::{Channel, Lane};
use tokio_util::sync::CancellationToken;

pub use config::DispatchConfig;
pub use handler::DispatchSetup;
pub use ledger::DeliveryLedger;
pub use providers::{DeliveryError, Provider, Sent};
pub use routes::Routes;

/// Defines the dispatchers' metrics now rather than at their first use.
pub fn define_metrics() {
    handler::define_metrics();
    providers::define_metrics();
}

/// Consumer group of a channel's dispatchers (its urgent lane and the retry tiers).
pub fn group(kafka: &KafkaConfig, channel: Channel) -> String {
    kafka.group(&format!("dispatch-{channel}"))
}

/// Consumer group of one lane of a channel's dispatchers.
pub fn lane_group(kafka: &KafkaConfig, channel: Channel, lane: Lane) -> String {
    match lane {
        Lane::Urgent => group(kafka, channel),
        Lane::Bulk => kafka.group(&format!("dispatch-{channel}-bulk")),
    }
}

/// Runs the dispatcher of `setup.channel` until `shutdown` is cancelled: it consumes both
/// lanes' channel topics and every retry tier of the channel.
pub async fn run<L: DeliveryLedger>(
    kafka: &KafkaConfig,
    setup: DispatchSetup,
    routes: Routes,
    ledger: Arc<L>,
    output: AvroProducer,
    shutdown: CancellationToken,
) -> Result<(), consumer::ConsumerError> {
    handler::zero_series(setup.channel, &routes.provider_names());
    // One consumer group per lane, sharing the providers (and so their limits and
    // breakers): a bulk backlog never queues in front of an urgent message. Retries of
    // both lanes come due in the urgent group's tiers, off both lanes' main path.
    let lane = |lane: Lane| {
        let group = lane_group(kafka, setup.channel, lane);
        let topics = &setup.topics;
        let dead_letters = DeadLetters::new(output.producer().clone(), topics.dlq(), &group);
        let mut inputs = vec![topics.channel_in(setup.channel, lane)];
        if lane == Lane::Urgent {
            inputs.extend((1..=setup.retry.tiers()).map(|tier| topics.retry(setup.channel, tier)));
        }
        let spec = ConsumerSpec { group_id: group.clone(), topics: inputs, client_id: group };
        let handler = Arc::new(handler::DispatchHandler::new(
            setup.clone(),
            routes.clone(),
            Arc::clone(&ledger),
            output.clone(),
            dead_letters,
        ));
        consumer::run(kafka, spec, handler, shutdown.clone())
    };
    let (urgent, bulk) = tokio::join!(lane(Lane::Urgent), lane(Lane::Bulk));
    urgent.and(bulk)
}
