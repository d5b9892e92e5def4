//! HTTP routes of the send API.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use herald_runtime::http::{BrokerReadiness, ops_router};
use herald_runtime::kafka::{AvroProducer, Header, OwnedHeaders, wait_all};
use herald_runtime::metrics;
use herald_schemas::headers;
use prometheus::{HistogramVec, IntCounterVec};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::clients::ApiClients;
use crate::config::IngestConfig;
use crate::request::{self, Limits, SendBody};

struct ApiMetrics {
    requests: IntCounterVec,
    produce_seconds: HistogramVec,
}

fn api_metrics() -> &'static ApiMetrics {
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

struct Shared {
    clients: ApiClients,
    output: AvroProducer,
    requests_topic: String,
    limits: Limits,
    max_body_bytes: usize,
}

/// The send API, ready to serve.
#[derive(Clone)]
pub struct Ingest {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest")
            .field("requests_topic", &self.shared.requests_topic)
            .finish_non_exhaustive()
    }
}

fn error(status: StatusCode, code: &str, message: impl std::fmt::Display) -> Response {
    (status, Json(json!({"error": code, "message": message.to_string()}))).into_response()
}

impl Ingest {
    pub fn new(
        config: &IngestConfig,
        clients: ApiClients,
        output: AvroProducer,
        requests_topic: String,
    ) -> Self {
        let limits = Limits { max_recipients: config.max_recipients };
        Self {
            shared: Arc::new(Shared {
                clients,
                output,
                requests_topic,
                limits,
                max_body_bytes: config.max_body_bytes,
            }),
        }
    }

    pub fn router(&self) -> Router {
        let readiness = Arc::new(BrokerReadiness::new(
            self.shared.output.producer().clone(),
            self.shared.requests_topic.clone(),
        ));
        Router::new()
            .route("/v1/notifications", post(send))
            .layer(DefaultBodyLimit::max(self.shared.max_body_bytes))
            .with_state(Arc::clone(&self.shared))
            .merge(ops_router(readiness))
            .layer(middleware::from_fn(count_requests))
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        tracing::info!(addr = ?listener.local_addr().ok(), "send API listening");
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
    }
}

async fn count_requests(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    api_metrics().requests.with_label_values(&[&route, response.status().as_str()]).inc();
    response
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

async fn send(
    State(shared): State<Arc<Shared>>,
    request_headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(key) = bearer(&request_headers) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing API key: send `Authorization: Bearer <key>`",
        );
    };
    let client_id = match shared.clients.authenticate(key).await {
        Ok(Some(client_id)) => client_id,
        Ok(None) => {
            return error(StatusCode::UNAUTHORIZED, "unauthorized", "unknown or revoked API key");
        }
        Err(e) => {
            tracing::error!(error = %e, "API client store unavailable");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "cannot check API keys right now",
            );
        }
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("request body is larger than {} bytes", shared.max_body_bytes);
            return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message);
        }
        Err(rejection) => return error(rejection.status(), "bad_request", rejection.body_text()),
    };
    let parsed: Result<SendBody, _> =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body));
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => {
            let body = json!({"error": "invalid_json", "field": e.path().to_string(), "message": e.inner().to_string()});
            return (StatusCode::BAD_REQUEST, Json(body)).into_response();
        }
    };
    let notification_id = uuid::Uuid::now_v7().to_string();
    let requests = match request::validate(parsed, shared.limits, &notification_id, &client_id) {
        Ok(requests) => requests,
        Err(errors) => {
            let body = json!({"error": "validation_failed", "errors": errors});
            return (StatusCode::UNPROCESSABLE_ENTITY, Json(body)).into_response();
        }
    };
    let started = Instant::now();
    let mut acks = Vec::with_capacity(requests.len());
    for request in &requests {
        let headers = OwnedHeaders::new().insert(Header {
            key: headers::NOTIFICATION_ID,
            value: Some(notification_id.as_str()),
        });
        match shared
            .output
            .enqueue(&shared.requests_topic, request.partition_key(), request, Some(headers))
            .await
        {
            Ok(ack) => acks.push(ack),
            Err(e) => {
                tracing::error!(error = %e, "cannot produce request");
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the request could not be queued; retry later",
                );
            }
        }
    }
    if let Err(e) = wait_all(acks).await {
        tracing::error!(error = %e, "broker did not acknowledge request");
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the broker did not acknowledge the request; retry later",
        );
    }
    api_metrics()
        .produce_seconds
        .with_label_values(&["/v1/notifications"])
        .observe(started.elapsed().as_secs_f64());
    let body = json!({"id": notification_id, "recipients": requests.len()});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}
