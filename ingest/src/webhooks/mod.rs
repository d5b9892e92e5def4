//! Status webhooks to callers: a consumer group of its own (`herald-webhooks`) on
//! `herald.events` posts each event of an API client's notification to the URL the client
//! registered, signed with the client's secret. A failed post waits in
//! `herald.retry.webhooks.<n>` (held until due, as the dispatchers' retries are) and is
//! dead-lettered after the last tier. Being its own group, a slow or failing caller holds up
//! only its own webhooks, never a notification's delivery.
//!
//! While no client has a webhook the sender reads nothing: it waits for the first
//! registration, moves its group to that moment on `herald.events` and starts there.
//! Reading every event for nobody cost Tansu a query per event fetched, a large share of
//! `herald dev`'s throughput.

pub mod registry;

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::store::StoreError;
use herald_runtime::KafkaConfig;
use herald_runtime::kafka::group_offsets;
use herald_runtime::kafka::{
    ChangeMode, ConsumerSpec, DeadLetters, ErrorClass, Handler, HandlerError, Message,
    OwnedMessage, Producer, consumer, headers_replacing,
};
use herald_runtime::metrics;
use herald_schemas::{AvroCodec, DeliveryEvent, Topics, headers};
use prometheus::{HistogramVec, IntCounterVec};
use ring::hmac;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::status::StatusStore;
pub use registry::{Webhook, WebhookRegistry};

pub const GROUP: &str = "webhooks";

/// The header carrying `t=<ms>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.
pub const SIGNATURE_HEADER: &str = "Herald-Signature";

struct WebhookMetrics {
    deliveries: IntCounterVec,
    seconds: HistogramVec,
}

fn webhook_metrics() -> &'static WebhookMetrics {
    static METRICS: OnceLock<WebhookMetrics> = OnceLock::new();
    METRICS.get_or_init(|| WebhookMetrics {
        deliveries: metrics::counter_vec(
            "herald_webhook_deliveries_total",
            "Status webhook posts to callers by outcome (delivered, retrying, dead_lettered).",
            &["outcome"],
        ),
        seconds: metrics::histogram_vec(
            "herald_webhook_seconds",
            "Time from posting a status webhook to the caller's answer (or the timeout).",
            &["outcome"],
        ),
    })
}

pub(crate) fn define_metrics() {
    let _ = webhook_metrics();
}

/// `t=...,v1=...` for `body` sent at `at_ms` under `secret`.
pub fn signature(secret: &str, at_ms: i64, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut context = hmac::Context::with_key(&key);
    context.update(format!("{at_ms}.").as_bytes());
    context.update(body);
    format!("t={at_ms},v1={}", hex::encode(context.sign().as_ref()))
}

/// The JSON a caller receives for `event`.
pub fn payload(event: &DeliveryEvent) -> serde_json::Value {
    json!({
        "id": event.event_id,
        "type": event.kind.as_str(),
        "notification_id": event.notification_id,
        "occurred_at": event.occurred_at,
        "channel": event.channel,
        "target": event.target,
        "user_id": event.user_id,
        "provider": event.provider,
        "reason": event.reason,
        "attempt": event.attempt,
        "detail": event.detail,
    })
}

/// How webhooks are posted and retried.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub timeout: Duration,
    /// The wait before each retry; after the last, the event is dead-lettered.
    pub retry_delays: Vec<Duration>,
}

struct WebhookSender {
    registry: WebhookRegistry,
    status: StatusStore,
    codec: Arc<AvroCodec>,
    http: reqwest::Client,
    producer: Producer,
    dead_letters: DeadLetters,
    topics: Topics,
    settings: WebhookSettings,
}

impl WebhookSender {
    /// Posts `body` to `webhook`; why it failed, if it did.
    async fn post(&self, webhook: &Webhook, event_id: &str, body: Vec<u8>) -> Result<(), String> {
        let at = herald_schemas::now_millis();
        let started = Instant::now();
        let answer = self
            .http
            .post(&webhook.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("Herald-Webhook-Id", event_id)
            .header(SIGNATURE_HEADER, signature(&webhook.secret, at, &body))
            .body(body)
            .send()
            .await;
        let result = match answer {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(format!("the endpoint answered {}", response.status())),
            // Never the URL: it may carry the caller's credentials.
            Err(e) if e.is_timeout() => Err("the endpoint did not answer in time".to_owned()),
            Err(e) if e.is_connect() => Err("the endpoint refused the connection".to_owned()),
            Err(_) => Err("the post failed".to_owned()),
        };
        let outcome = if result.is_ok() { "delivered" } else { "failed" };
        webhook_metrics()
            .seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// After attempt `attempt` failed: into the next tier, or the dead-letter topic.
    async fn retry_later(
        &self,
        record: &OwnedMessage,
        attempt: i32,
        reason: &str,
    ) -> Result<(), HandlerError> {
        let tier = usize::try_from(attempt).unwrap_or(usize::MAX);
        let Some(delay) = self.settings.retry_delays.get(tier.saturating_sub(1)) else {
            let reason = format!("webhook not delivered after {attempt} attempt(s): {reason}");
            webhook_metrics().deliveries.with_label_values(&["dead_lettered"]).inc();
            return self
                .dead_letters
                .send(record, ErrorClass::RetriesExhausted, &reason)
                .await
                .map_err(HandlerError::new);
        };
        let due = herald_schemas::now_millis()
            .saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
        let (next, due) = ((attempt + 1).to_string(), due.to_string());
        let replaced = [headers::ATTEMPT, headers::DUE_AT, headers::ERROR_REASON];
        let set = [
            (headers::ATTEMPT, next.as_str()),
            (headers::DUE_AT, &due),
            (headers::ERROR_REASON, reason),
        ];
        let retry_headers = headers_replacing(record, &replaced, &set);
        let topic = self.topics.webhook_retry(u32::try_from(tier).unwrap_or(u32::MAX));
        let payload = record.payload().unwrap_or_default();
        self.producer
            .send(&topic, record.key(), payload, Some(retry_headers))
            .await
            .map_err(HandlerError::new)?;
        webhook_metrics().deliveries.with_label_values(&["retrying"]).inc();
        Ok(())
    }
}

impl Handler for WebhookSender {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        let decoded = self.dead_letters.decode_or_dead_letter::<DeliveryEvent>(&self.codec, record);
        let Some(event) = decoded.await? else { return Ok(()) };
        // Notifications of services producing to Kafka directly have no API client.
        let Some(client) =
            self.status.client_of(&event.notification_id).await.map_err(HandlerError::new)?
        else {
            return Ok(());
        };
        let Some(webhook) = self.registry.of(&client).await.map_err(HandlerError::new)? else {
            return Ok(());
        };
        if !webhook.wants(event.kind.as_str()) {
            return Ok(());
        }
        let body = serde_json::to_vec(&payload(&event)).map_err(HandlerError::new)?;
        match self.post(&webhook, &event.event_id, body).await {
            Ok(()) => {
                webhook_metrics().deliveries.with_label_values(&["delivered"]).inc();
                Ok(())
            }
            Err(reason) => {
                let attempt = herald_runtime::kafka::attempt(record);
                tracing::info!(client_id = %client, attempt, %reason, "status webhook failed");
                self.retry_later(record, attempt, &reason).await
            }
        }
    }
}

/// Everything the webhook sender reads and writes.
#[allow(missing_debug_implementations)] // the codec has no Debug
pub struct WebhookParts {
    pub registry: WebhookRegistry,
    pub status: StatusStore,
    pub codec: Arc<AvroCodec>,
    pub producer: Producer,
    pub settings: WebhookSettings,
}

/// How often a sender with no webhook to post to looks for a first one.
const IDLE_CHECK: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum WebhookRunError {
    #[error("reading the webhook registry failed: {0}")]
    Registry(#[from] StoreError),
    #[error(transparent)]
    Consumer(#[from] consumer::ConsumerError),
}

/// Runs the webhook sender until `shutdown` is cancelled; while no client has a webhook, it
/// only waits for one (see the module's documentation).
pub async fn run(
    kafka: &KafkaConfig,
    parts: WebhookParts,
    shutdown: CancellationToken,
) -> Result<(), WebhookRunError> {
    let topics = kafka.topics();
    if parts.registry.first_registered_at().await?.is_none() {
        tracing::info!(
            "no client has a status webhook: the webhook sender reads no events until one is registered"
        );
        let Some(since) = first_registration(&parts.registry, &shutdown).await else {
            return Ok(());
        };
        let (kafka, events) = (kafka.clone(), topics.events());
        let moved = tokio::task::spawn_blocking(move || {
            let group = kafka.group(GROUP);
            group_offsets::reset_to_time(&kafka, &group, &[events], since, ChangeMode::Apply)
        })
        .await
        .map_err(|e| e.to_string())
        .and_then(|moved| moved.map_err(|e| e.to_string()));
        match moved {
            Ok(_) => tracing::info!(
                since,
                "a status webhook is registered: sending events from its registration on"
            ),
            // Another ingest instance's sender is reading (the broker refuses commits from
            // outside a live group): it already is where this one should start.
            Err(error) => {
                tracing::warn!(%error, "cannot move the webhook sender to the first registration; starting from its group's offsets")
            }
        }
    }
    send(kafka, parts, shutdown).await
}

/// Waits until some client has a webhook; its registration time, or `None` on shutdown. A
/// store that cannot answer (a CQL outage) is asked again at the next check: the sender must
/// outlive the outage, not end with it.
async fn first_registration(
    registry: &WebhookRegistry,
    shutdown: &CancellationToken,
) -> Option<i64> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            () = tokio::time::sleep(IDLE_CHECK) => {}
        }
        match registry.first_registered_at().await {
            Ok(Some(since)) => return Some(since),
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, "cannot ask the store for status webhooks; asking again")
            }
        }
    }
}

async fn send(
    kafka: &KafkaConfig,
    parts: WebhookParts,
    shutdown: CancellationToken,
) -> Result<(), WebhookRunError> {
    let topics = kafka.topics();
    let group = kafka.group(GROUP);
    let tiers = u32::try_from(parts.settings.retry_delays.len()).unwrap_or(u32::MAX);
    let mut inputs = vec![topics.events()];
    inputs.extend((1..=tiers).map(|tier| topics.webhook_retry(tier)));
    let http = reqwest::Client::builder()
        .timeout(parts.settings.timeout)
        .build()
        .unwrap_or_else(|_| reqwest::Client::new());
    let sender = WebhookSender {
        registry: parts.registry,
        status: parts.status,
        codec: parts.codec,
        http,
        dead_letters: DeadLetters::new(parts.producer.clone(), topics.dlq(), &group),
        producer: parts.producer,
        topics,
        settings: parts.settings,
    };
    let spec = ConsumerSpec { group_id: group.clone(), topics: inputs, client_id: group };
    Ok(consumer::run(kafka, spec, Arc::new(sender), shutdown).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_the_time_and_the_body() {
        let signed = signature("whsec_1", 1_700_000_000_000, b"{\"a\":1}");
        assert!(signed.starts_with("t=1700000000000,v1="), "{signed}");
        assert_ne!(signed, signature("whsec_1", 1_700_000_000_001, b"{\"a\":1}"));
        assert_ne!(signed, signature("whsec_1", 1_700_000_000_000, b"{\"a\":2}"));
        assert_ne!(signed, signature("whsec_2", 1_700_000_000_000, b"{\"a\":1}"));
    }
}
