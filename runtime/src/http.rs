//! Health, readiness and metrics endpoints, served by every role.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// Answers whether the role can do its work now (e.g. the broker is reachable).
pub trait Readiness: Send + Sync + 'static {
    fn is_ready(&self) -> impl Future<Output = Result<(), String>> + Send;
}

/// `/healthz` (the process runs), `/readyz` (it can work), `/metrics` (Prometheus).
pub fn ops_router<R: Readiness>(readiness: Arc<R>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
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
        .route("/metrics", get(metrics))
}

async fn metrics() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render())
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
