//! Starting each role from the configuration. `herald ingest|enrich|dispatch` run one role
//! per process; `herald dev` and the tests run them side by side in one.

use std::sync::Arc;

use anyhow::Context;
use herald_dispatchers::email::SmtpProvider;
use herald_enricher::SqliteDirectory;
use herald_ingest::{ApiClients, Ingest};
use herald_runtime::http::BrokerReadiness;
use herald_runtime::kafka::{AvroProducer, Producer};
use herald_schemas::{AvroCodec, Channel};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HeraldConfig;

/// The producer and codec a role writes its outputs with.
pub fn output(config: &HeraldConfig, client_id: &str) -> anyhow::Result<AvroProducer> {
    let registry = config
        .schema_registry
        .resolve()
        .context("schema registry settings")?;
    let codec = AvroCodec::new(&registry).context("schema registry client")?;
    let producer = Producer::new(&config.kafka, client_id).context("Kafka producer")?;
    Ok(AvroProducer::new(producer, Arc::new(codec)))
}

/// Serves the send API on `listener` until `shutdown`.
pub async fn ingest(
    config: &HeraldConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let clients = ApiClients::open(&config.ingest.store_path).context("API client store")?;
    let output = output(config, "herald-ingest")?;
    let api = Ingest::new(
        &config.ingest,
        clients,
        output.clone(),
        config.kafka.topics().requests(),
    );
    api.serve(listener, shutdown).await.context("send API")?;
    output
        .producer()
        .flush(std::time::Duration::from_secs(5))
        .await;
    Ok(())
}

pub async fn enricher(config: &HeraldConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let directory =
        SqliteDirectory::open(&config.enricher.directory_path).context("enricher directory")?;
    let output = output(config, "herald-enricher")?;
    herald_enricher::run(&config.kafka, Arc::new(directory), output, shutdown)
        .await
        .context("enricher")
}

pub async fn dispatcher(
    config: &HeraldConfig,
    channel: Channel,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let output = output(config, &herald_dispatchers::group(channel))?;
    match channel {
        Channel::Email => {
            let provider = SmtpProvider::new(&config.dispatch.email).context("email provider")?;
            herald_dispatchers::run(&config.kafka, channel, Arc::new(provider), output, shutdown)
                .await
                .context("email dispatcher")
        }
        Channel::Sms | Channel::Ios | Channel::Android => {
            anyhow::bail!("no provider is implemented for the {channel} channel yet")
        }
    }
}

/// Serves `/healthz`, `/readyz` (Kafka reachable) and `/metrics` for a consumer role, if
/// `ops.listen` is configured.
pub async fn ops(config: &HeraldConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(addr) = config.ops.listen else {
        return Ok(());
    };
    let producer =
        Producer::new(&config.kafka, "herald-ops").context("Kafka client for readiness")?;
    let readiness = BrokerReadiness::new(producer, config.kafka.topics().requests());
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("ops endpoint {addr}"))?;
    axum::serve(
        listener,
        herald_runtime::http::ops_router(Arc::new(readiness)),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
    .context("ops endpoint")
}
