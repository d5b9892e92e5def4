//! Health, readiness and metrics endpoints, served by every role.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// One failed rule of a request: where and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub reason: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// Every 4xx/5xx answer of Herald's HTTP APIs.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// A stable code: unauthorized, forbidden, invalid_json, validation_failed,
    /// payload_too_large, rate_limited, idempotency_key_reused, idempotency_key_in_use,
    /// not_found, unknown_user, unavailable.
    pub error: String,
    /// What went wrong, for a person to read.
    pub message: String,
    /// For invalid_json: the path of the field that could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// For validation_failed: every failed rule, with its field path.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error answer: `{"error": code, "message": ...}`.
pub fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    let body = ErrorBody {
        error: code.to_owned(),
        message: message.to_string(),
        field: None,
        errors: Vec::new(),
    };
    (status, Json(body)).into_response()
}

/// The 400 answer to a body that is not JSON of the expected shape, naming where it broke.
pub fn invalid_json(field: String, message: impl std::fmt::Display) -> Response {
    let body = ErrorBody {
        error: "invalid_json".into(),
        message: message.to_string(),
        field: Some(field),
        errors: Vec::new(),
    };
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// The 422 answer's body: every failed rule, and the first one in the message.
pub fn validation_failed(errors: Vec<FieldError>) -> ErrorBody {
    let message = match errors.as_slice() {
        [] => "the request failed validation".to_owned(),
        [only] => only.to_string(),
        [first, rest @ ..] => format!("{first} (and {} more in errors)", rest.len()),
    };
    ErrorBody { error: "validation_failed".into(), message, field: None, errors }
}

/// Answers whether the role can do its work now (e.g. the broker is reachable).
pub trait Readiness: Send + Sync + 'static {
    fn is_ready(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// `/healthz` (the process runs), `/readyz` (it can work), `/metrics` (Prometheus): what a
/// role serves on `ops.listen`.
pub fn ops_router<R: Readiness>(readiness: Arc<R>) -> Router {
    probes_router(readiness).route("/metrics", get(metrics))
}

/// `/healthz` and `/readyz` alone: what the send API also answers on its public port, for a
/// load balancer that checks the port it forwards to. Its metrics stay on the ops port.
pub fn probes_router<R: Readiness>(readiness: Arc<R>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get(move || {
            let readiness = Arc::clone(&readiness);
            async move {
                match readiness.is_ready().await {
                    Ok(()) => (StatusCode::OK, "ready".to_owned()),
                    Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
                }
            }
        }),
    )
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
}

/// Ready whenever the process serves: for the send API, which answers a broker or store
/// outage itself (503 with `Retry-After`). Were it to leave the load balancer instead, every
/// instance would leave at once and callers would get refused connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct Serving;

impl Readiness for Serving {
    async fn is_ready(&self) -> Result<(), String> {
        Ok(())
    }
}

/// Ready when the Kafka cluster answers a metadata request for `topic`.
#[derive(Debug, Clone)]
pub struct BrokerReadiness {
    producer: crate::kafka::Producer,
    topic: String,
}

impl BrokerReadiness {
    pub fn new(producer: crate::kafka::Producer, topic: String) -> Self {
        Self { producer, topic }
    }
}

impl Readiness for BrokerReadiness {
    async fn is_ready(&self) -> Result<(), String> {
        use rdkafka::producer::Producer as _;
        let producer = self.producer.client().clone();
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(Some(&topic), std::time::Duration::from_secs(2))
                .map(drop)
                .map_err(|e| format!("Kafka not reachable: {e}"))
        })
        .await
        .map_err(|e| e.to_string())?
    }
}
