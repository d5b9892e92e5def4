//! The send API's HTTP surface: routes, authentication, metrics. Handlers live in
//! [`crate::routes`].

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use herald_runtime::http::{Serving, probes_router};
use herald_runtime::kafka::AvroProducer;
use herald_schemas::Topics;
use tokio_util::sync::CancellationToken;

use crate::clients::DirectoryAccess;
use crate::config::IngestConfig;
use crate::rate::ClientRates;
use crate::request::Limits;
use crate::routes;
use crate::signatures::{SendgridVerifier, TwilioVerifier};
use crate::state::{Shared, api_metrics, authenticate, error, over_rate};
use crate::stores::IngestStores;

/// Why the provider callbacks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CallbackSetupError {
    #[error("Twilio callbacks: {0}")]
    Twilio(#[from] herald_runtime::config::SecretError),
    #[error(transparent)]
    Sendgrid(#[from] crate::signatures::KeyError),
}

/// The send API, ready to serve.
#[derive(Clone)]
pub struct Ingest {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").field("topics", &self.shared.topics).finish_non_exhaustive()
    }
}

impl Ingest {
    pub fn new(
        config: &IngestConfig,
        stores: &IngestStores,
        output: AvroProducer,
        topics: Topics,
        tracker: Option<herald_runtime::tracking::EngagementTracker>,
    ) -> Result<Self, CallbackSetupError> {
        let twilio = config.callbacks.twilio.as_ref().map(TwilioVerifier::new).transpose()?;
        let sendgrid = config
            .callbacks
            .sendgrid
            .as_ref()
            .map(|s| SendgridVerifier::new(&s.verification_key))
            .transpose()?;
        herald_schemas::targets::load_numbering_plans();
        let max_schedule_ms = config.max_schedule_ms();
        let limits = Limits { max_recipients: config.max_recipients, max_schedule_ms };
        let shared = Shared {
            clients: stores.clients.clone(),
            status: stores.status.clone(),
            idempotency: stores.idempotency.clone(),
            rates: ClientRates::default(),
            output,
            topics,
            limits,
            max_body_bytes: config.max_body_bytes,
            bulk_limits: Limits { max_recipients: config.bulk_max_recipients, max_schedule_ms },
            bulk_max_body_bytes: config.bulk_max_body_bytes,
            tracker,
            twilio,
            sendgrid,
            templates: crate::templates::TemplateCatalog::default(),
            send_wait: std::time::Duration::from_millis(config.send_wait_ms.max(1)),
        };
        Ok(Self { shared: Arc::new(shared) })
    }

    /// The template ids this API refuses others than; fill it with
    /// [`crate::templates::follow`].
    pub fn template_catalog(&self) -> crate::templates::TemplateCatalog {
        self.shared.templates.clone()
    }

    pub fn router(&self) -> Router {
        self.router_with(None)
    }

    /// The send API, and `directory` (routes and their OpenAPI document) served beside it
    /// behind the same keys, each key needing its directory access.
    pub fn router_with(&self, directory: Option<(Router, utoipa::openapi::OpenApi)>) -> Router {
        let readiness = Arc::new(Serving);
        let mut document = crate::openapi::document();
        let directory = directory.map(|(routes, doc)| {
            document.merge(doc);
            routes
                .layer(DefaultBodyLimit::max(self.shared.max_body_bytes))
                .layer(middleware::from_fn_with_state(Arc::clone(&self.shared), directory_guard))
        });
        let document = Arc::new(document);
        Router::new()
            .route("/v1/notifications", post(routes::send))
            .route(
                "/v1/notifications/bulk",
                post(routes::send_bulk)
                    .layer(DefaultBodyLimit::max(self.shared.bulk_max_body_bytes)),
            )
            .route("/v1/notifications/{id}", get(routes::status))
            .route("/v1/users/{user_id}/notifications", get(routes::user_notifications))
            .route("/openapi.json", get(move || crate::openapi::serve(Arc::clone(&document))))
            .route("/t/o/{token}", get(crate::tracking::opened))
            .route("/t/c/{token}", get(crate::tracking::clicked))
            .route("/v1/callbacks/twilio", post(crate::callbacks::twilio::twilio))
            .route("/v1/callbacks/sendgrid", post(crate::callbacks::sendgrid::events))
            .layer(DefaultBodyLimit::max(self.shared.max_body_bytes))
            .with_state(Arc::clone(&self.shared))
            .merge(directory.unwrap_or_default())
            .merge(probes_router(readiness))
            .layer(middleware::from_fn(count_requests))
    }

    /// Serves until `shutdown` is cancelled, then finishes in-flight requests.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        directory: Option<(Router, utoipa::openapi::OpenApi)>,
        shutdown: CancellationToken,
    ) -> std::io::Result<()> {
        tracing::info!(addr = ?listener.local_addr().ok(), "send API listening");
        axum::serve(listener, self.router_with(directory))
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

/// In front of the directory API: the key authenticates, keeps to its rate, and may read
/// the directory (`GET`) or change it (anything else).
async fn directory_guard(
    axum::extract::State(shared): axum::extract::State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let caller = match authenticate(&shared, request.headers()).await {
        Ok(caller) => caller,
        Err(refused) => return refused,
    };
    if let Some(refused) = over_rate(&shared, &caller) {
        return refused;
    }
    let wanted = if matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD)
    {
        DirectoryAccess::Read
    } else {
        DirectoryAccess::Write
    };
    if !caller.policy.allows_directory(wanted) {
        let message = format!(
            "this API key may not {} the directory (herald clients add --directory {})",
            if wanted == DirectoryAccess::Read { "read" } else { "change" },
            wanted.as_str()
        );
        return error(StatusCode::FORBIDDEN, "forbidden", message);
    }
    next.run(request).await
}
