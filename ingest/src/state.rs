//! What the send API's handlers share: the stores, the producer, the limits, the callback
//! verifiers; and what every handler does first: authenticate the caller, keep it to its
//! rate, count the request.

use std::sync::OnceLock;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use herald_runtime::kafka::AvroProducer;
use herald_runtime::metrics;
use herald_schemas::Topics;
use prometheus::{HistogramVec, IntCounterVec};

pub(crate) use herald_runtime::http::error;

use crate::clients::{ApiClients, Caller};
use crate::idempotency::IdempotencyStore;
use crate::rate::ClientRates;
use crate::request::Limits;
use crate::signatures::{SendgridVerifier, TwilioVerifier};
use crate::status::StatusStore;

pub(crate) struct ApiMetrics {
    pub(crate) requests: IntCounterVec,
    pub(crate) produce_seconds: HistogramVec,
}

pub(crate) fn api_metrics() -> &'static ApiMetrics {
    static METRICS: OnceLock<ApiMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ApiMetrics {
        requests: metrics::counter_vec(
            "herald_http_requests_total",
            "Send API requests by route and status.",
            &["route", "status"],
        ),
        produce_seconds: metrics::histogram_vec(
            "herald_ingest_produce_seconds",
            "Time from a valid request to the broker's acknowledgement of all its records.",
            &["route"],
        ),
    })
}

pub(crate) struct Shared {
    pub(crate) clients: ApiClients,
    pub(crate) status: StatusStore,
    pub(crate) idempotency: IdempotencyStore,
    pub(crate) rates: ClientRates,
    pub(crate) output: AvroProducer,
    pub(crate) topics: Topics,
    pub(crate) limits: Limits,
    pub(crate) max_body_bytes: usize,
    pub(crate) bulk_limits: Limits,
    pub(crate) bulk_max_body_bytes: usize,
    pub(crate) tracker: Option<herald_runtime::tracking::EngagementTracker>,
    pub(crate) twilio: Option<TwilioVerifier>,
    pub(crate) sendgrid: Option<SendgridVerifier>,
    pub(crate) templates: crate::templates::TemplateCatalog,
    /// The longest a send waits for the broker (`ingest.send_wait_ms`).
    pub(crate) send_wait: std::time::Duration,
}

impl Shared {
    /// Produces `event` to `herald.events` and waits for the broker's acknowledgement.
    pub(crate) async fn emit(&self, event: &herald_schemas::DeliveryEvent) -> Result<(), String> {
        let topic = self.topics.events();
        match self.output.enqueue(&topic, &event.notification_id, event, None).await {
            Ok(ack) => ack.wait().await.map(drop).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// The 429 answer, with Retry-After, when `caller` is over its rate.
pub(crate) fn over_rate(shared: &Shared, caller: &Caller) -> Option<Response> {
    let wait = shared
        .rates
        .admit(&caller.client_id, caller.policy.rate_per_second, std::time::Instant::now())
        .err()?;
    let seconds = wait.as_secs_f64().ceil().max(1.0);
    let mut refused = error(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("this API key is over its rate; retry in {seconds} s"),
    );
    if let Ok(value) = axum::http::HeaderValue::from_str(&format!("{seconds}")) {
        refused.headers_mut().insert(header::RETRY_AFTER, value);
    }
    Some(refused)
}

/// The calling client, or the response refusing the call.
pub(crate) async fn authenticate(shared: &Shared, headers: &HeaderMap) -> Result<Caller, Response> {
    let Some(key) = bearer(headers) else {
        let message = "missing API key: send `Authorization: Bearer <key>`";
        return Err(error(StatusCode::UNAUTHORIZED, "unauthorized", message));
    };
    match shared.clients.authenticate(key).await {
        Ok(Some(caller)) => Ok(caller),
        Ok(None) => {
            Err(error(StatusCode::UNAUTHORIZED, "unauthorized", "unknown or revoked API key"))
        }
        Err(e) => {
            tracing::error!(error = %e, "API client store unavailable");
            let message = "cannot check API keys right now";
            Err(error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message))
        }
    }
}
