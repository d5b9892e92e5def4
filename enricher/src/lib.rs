//! The enricher: a consumer group on `herald.requests` that joins each request with what the
//! directory knows about its recipient (contact points, devices, preferences), drops what the
//! preferences forbid with a `skipped` event, and produces one `ChannelMessage` per target to
//! `herald.channel.<channel>`. A request's offset is stored only after every output was
//! acknowledged by the broker.

pub mod api;
pub mod cache;
pub mod changes;
pub mod config;
pub mod directory;
pub mod fanout;
pub mod freshness;
mod handler;
pub mod import;
pub mod quiet;
mod scheduler;
pub mod templates;

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{AvroProducer, ClientSetupError, ConsumerSpec, DeadLetters, consumer};
use herald_schemas::Lane;
use tokio_util::sync::CancellationToken;

pub use cache::CachedDirectory;
pub use changes::DirectoryWriter;
pub use config::{DirectoryBackend, EnricherConfig, Fallbacks, FrequencyCaps, RegionRoutes, Rules};
pub use directory::scylla::ScyllaDirectory;
pub use directory::sqlite::SqliteDirectory;
pub use directory::{
    Device, Directory, DirectoryError, Platform, Preference, TemplateVariant, User,
};
pub use freshness::Freshness;

/// Defines the enricher's metrics now rather than at their first use.
pub fn define_metrics() {
    handler::define_metrics();
    cache::define_metrics();
    freshness::define_metrics();
}

/// Consumer group of the enricher's urgent lane, after `kafka.group_prefix`.
pub const GROUP: &str = "enricher";
/// Consumer group applying the directory topics (changes, templates, dead tokens), after
/// the prefix.
pub const DIRECTORY_GROUP: &str = "enricher-directory";
/// Consumer group moving scheduled requests through `herald.delay.*`, after the prefix.
pub const SCHEDULER_GROUP: &str = "scheduler";

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Consumer(#[from] consumer::ConsumerError),
    #[error(transparent)]
    Setup(#[from] ClientSetupError),
    #[error(transparent)]
    Freshness(#[from] freshness::FreshnessSetupError),
}

/// Runs the enricher until `shutdown` is cancelled: the fan-out of both lanes' requests, the
/// directory's applier, and the scheduler of delayed requests.
pub async fn run<D: Directory>(
    kafka: &KafkaConfig,
    rules: Rules,
    directory: Arc<CachedDirectory<D>>,
    output: AvroProducer,
    shutdown: CancellationToken,
) -> Result<(), RunError> {
    handler::zero_series();
    let topics = kafka.topics();
    let producer = output.producer().clone();
    let codec = output.codec_handle();
    let freshness = Freshness::start(kafka, Arc::clone(&directory), shutdown.clone()).await?;
    let applier = {
        let group = kafka.group(DIRECTORY_GROUP);
        let dead_letters = DeadLetters::new(producer.clone(), topics.dlq(), &group);
        let writer = DirectoryWriter::new(kafka, Arc::clone(&codec), producer.clone(), &group)?;
        let (reporter, written) =
            changes::progress::reporter(Arc::clone(&directory), Some(freshness.clone()));
        let handler = Arc::new(changes::apply::Applier::new(
            Arc::clone(&directory),
            writer,
            Arc::clone(&codec),
            dead_letters,
            reporter,
        ));
        let spec = ConsumerSpec {
            group_id: group.clone(),
            topics: vec![
                topics.directory_changes(),
                topics.templates(),
                topics.directory_updates(),
            ],
            client_id: group,
        };
        let shutdown = shutdown.clone();
        let applying = applier_tuning(kafka);
        async move {
            let result = consumer::run(&applying, spec, handler, shutdown).await;
            let _ = written.await;
            result
        }
    };
    // One consumer group per lane: a backlog of bulk requests never queues in front of an
    // urgent one, in the broker or in this process.
    let fan_out = fan_out_lanes(
        kafka,
        topics.clone(),
        (directory, output, rules, freshness),
        shutdown.clone(),
    );
    let schedule = {
        let group = kafka.group(SCHEDULER_GROUP);
        let dead_letters = DeadLetters::new(producer.clone(), topics.dlq(), &group);
        let handler =
            Arc::new(scheduler::Scheduler::new(codec, producer, dead_letters, topics.clone()));
        let spec = ConsumerSpec {
            group_id: group.clone(),
            topics: herald_schemas::DELAY_TIERS.iter().map(|t| topics.delay(t)).collect(),
            client_id: group,
        };
        consumer::run(kafka, spec, handler, shutdown)
    };
    let (fan_out, applied, schedule) = tokio::join!(fan_out, applier, schedule);
    Ok(fan_out.and(applied).and(schedule)?)
}

/// The applier's consumer: a change is a store write whose commit waits for the store's
/// next batch, holding nothing of the producer's memory, so many more of them run at once
/// than the lanes' requests do; a user's changes still apply one after another.
fn applier_tuning(kafka: &KafkaConfig) -> KafkaConfig {
    const KEY_QUEUES: usize = 1_024;
    const IN_FLIGHT: usize = 32_768;
    let mut applying = kafka.clone();
    let consumer = &mut applying.consumer;
    consumer.key_queues_per_partition = consumer.key_queues_per_partition.max(KEY_QUEUES);
    consumer.max_in_flight = consumer.max_in_flight.max(IN_FLIGHT);
    applying
}

/// The consumer group fanning out one lane's requests.
pub fn group(kafka: &KafkaConfig, lane: Lane) -> String {
    match lane {
        Lane::Urgent => kafka.group(GROUP),
        Lane::Bulk => kafka.group(&format!("{GROUP}-bulk")),
    }
}

/// Both lanes' fan-out consumers, run together until `shutdown`.
async fn fan_out_lanes<D: Directory>(
    kafka: &KafkaConfig,
    topics: herald_schemas::Topics,
    (directory, output, rules, freshness): (
        Arc<CachedDirectory<D>>,
        AvroProducer,
        Rules,
        Freshness,
    ),
    shutdown: CancellationToken,
) -> Result<(), consumer::ConsumerError> {
    let lane = |lane: Lane| {
        let group = group(kafka, lane);
        let dead_letters = DeadLetters::new(output.producer().clone(), topics.dlq(), &group);
        let handler = Arc::new(handler::EnrichHandler::new(
            Arc::clone(&directory),
            output.clone(),
            dead_letters,
            (topics.clone(), rules.clone()),
            freshness.clone(),
        ));
        let spec = ConsumerSpec {
            group_id: group.clone(),
            topics: vec![topics.requests_in(lane)],
            client_id: group,
        };
        consumer::run(kafka, spec, handler, shutdown.clone())
    };
    let (urgent, bulk) = tokio::join!(lane(Lane::Urgent), lane(Lane::Bulk));
    urgent.and(bulk)
}
