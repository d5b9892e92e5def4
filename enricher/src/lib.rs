//! The enricher: a consumer group on `herald.requests` that joins each request with what the
//! directory knows about its recipient (contact points, devices, preferences), drops what the
//! preferences forbid with a `skipped` event, and produces one `ChannelMessage` per target to
//! `herald.channel.<channel>`. A request's offset is stored only after every output was
//! acknowledged by the broker.

pub mod config;
pub mod directory;
pub mod fanout;
mod handler;
pub mod sqlite_directory;

use std::sync::Arc;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{AvroProducer, ConsumerSpec, DeadLetters, consumer};
use tokio_util::sync::CancellationToken;

pub use config::EnricherConfig;
pub use directory::{Device, Directory, DirectoryError, Platform, Preference, User};
pub use sqlite_directory::SqliteDirectory;

/// Consumer group of the enricher.
pub const GROUP: &str = "herald-enricher";

/// Runs the enricher until `shutdown` is cancelled.
pub async fn run<D: Directory>(
    kafka: &KafkaConfig,
    directory: Arc<D>,
    output: AvroProducer,
    shutdown: CancellationToken,
) -> Result<(), consumer::ConsumerError> {
    let topics = kafka.topics();
    let dead_letters = DeadLetters::new(output.producer().clone(), topics.dlq(), GROUP);
    let handler =
        Arc::new(handler::EnrichHandler::new(directory, output, dead_letters, topics.clone()));
    let spec = ConsumerSpec {
        group_id: GROUP.into(),
        topics: vec![topics.requests()],
        client_id: "herald-enricher".into(),
    };
    consumer::run(kafka, spec, handler, shutdown).await
}
