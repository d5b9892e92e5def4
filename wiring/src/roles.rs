//! Starting each role from the configuration. `herald ingest|enrich|dispatch` run one role
//! per process; `herald dev` and the tests run them side by side in one.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context;
use herald_dispatchers::config::ProviderLimits;
use herald_dispatchers::ledger::AnyLedger;
use herald_dispatchers::{DeliveryLedger, DispatchSetup, Provider, Routes};
use herald_enricher::api::DirectoryApi;
use herald_enricher::directory::AnyDirectory;
use herald_enricher::{CachedDirectory, Directory};
use herald_ingest::{Ingest, IngestStores};
use herald_runtime::http::BrokerReadiness;
use herald_runtime::kafka::{AvroProducer, Producer, acl, admin};
use herald_schemas::{AvroCodec, Channel, EncodeError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::HeraldConfig;

/// Waits until the cluster answers (see [`admin::wait_until_reachable`]): a role does this
/// before anything else, so that a cluster it cannot use stops it with the reason.
async fn reach_kafka(config: &HeraldConfig) -> anyhow::Result<()> {
    admin::wait_until_reachable(&config.kafka, config.kafka.connect_timeout())
        .await
        .context("Kafka (kafka.bootstrap_servers, kafka.properties, kafka.secret_properties)")
}

/// Registers Herald's schemas under the subjects of every topic the pipeline writes records
/// to (the registry answers with the id of a schema it has). A role does this at start-up:
/// a registry that cannot be reached, or refuses a schema, stops it there with the subject
/// and the registry's reason; later records are written with the ids found here.
async fn register_schemas(config: &HeraldConfig, output: &AvroProducer) -> anyhow::Result<()> {
    let codec = output.codec_handle();
    let url = &config.schema_registry.url;
    let registrations = config.kafka.topics().written_records().into_iter().map(|(topic, record)| {
        let codec = Arc::clone(&codec);
        async move {
            codec.register_kind(&topic, record).await.map_err(|e| match e {
                EncodeError::Registry { retryable: true, reason, .. } => anyhow::anyhow!(
                    "cannot reach the schema registry at {url} (schema_registry.url): {reason}"
                ),
                EncodeError::Registry { subject, reason, .. } => anyhow::anyhow!(
                    "the schema registry at {url} refused Herald's {} schema under subject {subject}: {reason}",
                    record.name()
                ),
                other => anyhow::Error::from(other),
            })
        }
    });
    futures::future::try_join_all(registrations).await?;
    Ok(())
}

/// The producer and codec a role writes its outputs with.
pub fn output(config: &HeraldConfig, client_id: &str) -> anyhow::Result<AvroProducer> {
    let registry = config.schema_registry.resolve().context("schema registry settings")?;
    let codec = AvroCodec::new(&registry).context("schema registry client")?;
    let producer = Producer::new(&config.kafka, client_id).context("Kafka producer")?;
    Ok(AvroProducer::new(producer, Arc::new(codec)))
}

/// Serves the send API on `listener` and runs the status sink until `shutdown`; also
/// keeps the dead-letter depth metric current.
pub async fn ingest(
    config: &HeraldConfig,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    reach_kafka(config).await?;
    // A topic the cluster's authorizer hides from the role stops it here, naming the ACL.
    acl::check(&config.kafka, &crate::acls::ingest(config)).await?;
    let stores = IngestStores::open(&config.ingest).await.context("ingest store")?;
    let output = output(config, "herald-ingest")?;
    register_schemas(config, &output).await?;
    let topics = config.kafka.topics();
    let tracker = config.tracking.tracker().context("tracking secret")?;
    let api = Ingest::new(&config.ingest, &stores, output.clone(), topics.clone(), tracker)
        .context("provider callback secrets")?;
    let directory = directory_api(config, &output).await?;
    let erasure = herald_ingest::erasure::run(
        &config.kafka,
        stores.status.clone(),
        output.codec_handle(),
        shutdown.clone(),
    );
    let sink = herald_ingest::status_sink::run(
        &config.kafka,
        stores.status.clone(),
        output.codec_handle(),
        output.producer().clone(),
        shutdown.clone(),
    );
    let templates =
        herald_ingest::templates::follow(&config.kafka, api.template_catalog(), shutdown.clone());
    let webhooks = herald_ingest::webhooks::run(
        &config.kafka,
        herald_ingest::webhooks::WebhookParts {
            registry: stores.webhooks.clone(),
            status: stores.status.clone(),
            codec: output.codec_handle(),
            producer: output.producer().clone(),
            settings: herald_ingest::webhooks::WebhookSettings {
                timeout: std::time::Duration::from_millis(config.ingest.webhook_timeout_ms),
                retry_delays: config.dispatch.retry.delays(),
            },
        },
        shutdown.clone(),
    );
    let depth = admin::track_depth(config.kafka.clone(), topics.dlq(), shutdown.clone());
    let (api, sink, webhooks, templates, erasure, ()) = tokio::join!(
        api.serve(listener, Some(directory), shutdown),
        sink,
        webhooks,
        templates,
        erasure,
        depth
    );
    templates.context("templates catalog")?;
    erasure.context("erasing users' events")?;
    output.producer().flush(std::time::Duration::from_secs(5)).await;
    api.context("send API")?;
    webhooks.context("status webhooks")?;
    sink.context("status sink")
}

/// The directory API, on the configured directory store, writing with `output`'s registry.
async fn directory_api(
    config: &HeraldConfig,
    output: &AvroProducer,
) -> anyhow::Result<(axum::Router, utoipa::openapi::OpenApi)> {
    let enricher = &config.enricher;
    let group = config.kafka.group("directory-api");
    let writer = herald_enricher::DirectoryWriter::new(
        &config.kafka,
        output.codec_handle(),
        output.producer().clone(),
        &group,
    )
    .context("Kafka producer of directory changes")?;
    let wait = std::time::Duration::from_millis(enricher.directory_api_wait_ms);
    let store = AnyDirectory::open(enricher).await.context("directory")?;
    Ok(DirectoryApi::new(Arc::new(store), writer, wait).router())
}

pub async fn enricher(config: &HeraldConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    reach_kafka(config).await?;
    acl::check(&config.kafka, &crate::acls::enricher(config)).await?;
    let output = output(config, "herald-enricher")?;
    register_schemas(config, &output).await?;
    let rules = herald_enricher::Rules::from(&config.enricher);
    let kafka = &config.kafka;
    let enricher = &config.enricher;
    fn cached<D: Directory>(
        directory: D,
        enricher: &herald_enricher::EnricherConfig,
    ) -> Arc<CachedDirectory<D>> {
        let ttl = std::time::Duration::from_millis(enricher.cache_ttl_ms);
        Arc::new(CachedDirectory::new(directory, ttl, enricher.cache_max_entries))
    }
    let directory = AnyDirectory::open(enricher).await.context("enricher directory")?;
    herald_enricher::run(kafka, rules, cached(directory, enricher), output, shutdown)
        .await
        .context("enricher")
}

/// Provider instances supplied by the caller by name, instead of built from configuration
/// (`herald dev`'s in-memory sandboxes).
pub type GivenProviders = HashMap<String, (Arc<dyn Provider>, ProviderLimits)>;

pub async fn dispatcher(
    config: &HeraldConfig,
    channel: Channel,
    given: &GivenProviders,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    reach_kafka(config).await?;
    acl::check(&config.kafka, &crate::acls::dispatcher(config, channel)).await?;
    let routes = Routes::build(channel, &config.dispatch, given).with_context(|| {
        format!("the providers of channel {channel} ([dispatch.routes.{channel}])")
    })?;
    let ledger_config = &config.dispatch.ledger;
    let ledger = Arc::new(AnyLedger::open(ledger_config).await.context("delivery ledger")?);
    let expiry = tokio::spawn(expire_ledger(
        Arc::clone(&ledger),
        ledger_config.retention(),
        shutdown.clone(),
    ));
    let result = dispatch_with(config, channel, routes, ledger, shutdown).await;
    expiry.abort();
    result
}

/// The ledger forgets deliveries older than the retention (ScyllaDB rows carry a TTL).
async fn expire_ledger(
    ledger: Arc<AnyLedger>,
    retention: std::time::Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let cutoff =
            herald_schemas::now_millis() - i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        match ledger.expire(cutoff).await {
            Ok(expired) => tracing::debug!(expired, "expired delivery ledger entries"),
            Err(e) => tracing::warn!(error = %e, "expiring delivery ledger entries failed"),
        }
    }
}

async fn dispatch_with<L: DeliveryLedger>(
    config: &HeraldConfig,
    channel: Channel,
    routes: Routes,
    ledger: Arc<L>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let output = output(config, &herald_dispatchers::group(&config.kafka, channel))?;
    register_schemas(config, &output).await?;
    let setup = DispatchSetup {
        channel,
        topics: config.kafka.topics(),
        retry: config.dispatch.retry.policy(),
        claim_timeout: config.dispatch.ledger.claim_timeout(),
        tracker: config.tracking.tracker().context("tracking secret")?,
    };
    herald_dispatchers::run(&config.kafka, setup, routes, ledger, output, shutdown)
        .await
        .with_context(|| format!("{channel} dispatcher"))
}

/// Serves `/healthz`, `/readyz` (Kafka reachable) and `/metrics` for a consumer role, if
/// `ops.listen` is configured.
pub async fn ops(config: &HeraldConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(listener) = ops_listener(config).await? else {
        return Ok(());
    };
    let producer =
        Producer::new(&config.kafka, "herald-ops").context("Kafka client for readiness")?;
    let readiness = BrokerReadiness::new(producer, config.kafka.topics().requests());
    serve_ops(listener, Arc::new(readiness), shutdown).await
}

/// The send API's ops endpoint, if `ops.listen` is configured: its `/metrics` are served
/// there, never on the public port; `/readyz` holds while the process serves (the API
/// answers an outage itself, with 503s).
pub async fn ingest_ops(config: &HeraldConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let Some(listener) = ops_listener(config).await? else {
        return Ok(());
    };
    serve_ops(listener, Arc::new(herald_runtime::http::Serving), shutdown).await
}

async fn ops_listener(config: &HeraldConfig) -> anyhow::Result<Option<TcpListener>> {
    let Some(addr) = config.ops.listen else {
        return Ok(None);
    };
    let listener = TcpListener::bind(addr).await.with_context(|| format!("ops endpoint {addr}"))?;
    Ok(Some(listener))
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until `shutdown`.
pub async fn serve_ops<R: herald_runtime::http::Readiness>(
    listener: TcpListener,
    readiness: Arc<R>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    axum::serve(listener, herald_runtime::http::ops_router(readiness))
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
        .context("ops endpoint")
}
