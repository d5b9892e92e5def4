//! The enricher: a consumer group on `herald.requests` that joins each request with what the
//! directory knows about its recipient (contact points, devices, preferences), drops what the
//! preferences forbid with a `skipped` event, and produces one `ChannelMessage` per target to
//! `herald.channel.<channel>`. A request's offset is stored only after every output was
//! acknowledged by the broker.

pub mod cache;
pub mod config;
pub mod directory;
mod directory_updates;
pub mod fanout;
mod handler;
pub mod import;
pub mod quiet;
mod scheduler;
pub mod templates;

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{AvroProducer, ConsumerSpec, DeadLetters, consumer};
use herald_schemas::Lane;
use tokio_util::sync::CancellationToken;

pub use cache::CachedDirectory;
pub use config::{DirectoryBackend, EnricherConfig, Fallbacks, FrequencyCaps, RegionRoutes, Rules};
pub use directory::scylla::ScyllaDirectory;
pub use directory::sqlite::SqliteDirectory;
pub use directory::{
    Device, Directory, DirectoryError, Platform, Preference, TemplateVariant, User,
};

/// Defines the enricher's metrics now rather than at their first use.
pub fn define_metrics() {
    handler::define_metrics();
    cache::define_metrics();
}

/// Consumer group of the enricher's urgent lane, after `kafka.group_prefix`.
pub const GROUP: &str = "enricher";
/// Consumer group applying directory updates from `herald.events`, after the prefix.
pub const DIRECTORY_GROUP: &str = "enricher-directory";
/// Consumer group moving scheduled requests through `herald.delay.*`, after the prefix.
pub const SCHEDULER_GROUP: &str = "scheduler";

/// Runs the enricher until `shutdown` is cancelled: the fan-out of `herald.requests`, and
/// the directory updates carried by `herald.events` (dead device tokens).
pub async fn run<D: Directory>(
    kafka: &KafkaConfig,
    rules: Rules,
    directory: Arc<D>,
    output: AvroProducer,
    shutdown: CancellationToken,
) -> Result<(), consumer::ConsumerError> {
    handler::zero_series();
    let topics = kafka.topics();
    let producer = output.producer().clone();
    let codec = output.codec_handle();
    // One consumer group per lane: a backlog of bulk requests never queues in front of an
    // urgent one, in the broker or in this process.
    let fan_out = fan_out_lanes(
        kafka,
        topics.clone(),
        (Arc::clone(&directory), output, rules),
        shutdown.clone(),
    );
    let updates = {
        let group = kafka.group(DIRECTORY_GROUP);
        let dead_letters = DeadLetters::new(producer.clone(), topics.dlq(), &group);
        let handler = Arc::new(directory_updates::DirectoryUpdates::new(
            directory,
            Arc::clone(&codec),
            dead_letters,
        ));
        let spec = ConsumerSpec {
            group_id: group.clone(),
            topics: vec![topics.directory_updates()],
            client_id: group,
        };
        consumer::run(kafka, spec, handler, shutdown.clone())
    };
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
    let (fan_out, updates, schedule) = tokio::join!(fan_out, updates, schedule);
    fan_out.and(updates).and(schedule)
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
    (directory, output, rules): (Arc<D>, AvroProducer, Rules),
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
