//! The send API's HTTP surface: routes, authentication, metrics. Handlers live in
//! [`crate::routes`].

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use herald_runtime::http::{BrokerReadiness, ops_router};
use herald_runtime::kafka::AvroProducer;
use herald_runtime::metrics;
use herald_schemas::Topics;
use prometheus::{HistogramVec, IntCounterVec};
use tokio_util::sync::CancellationToken;

use crate::clients::{ApiClients, Caller, DirectoryAccess};
use crate::config::IngestConfig;
use crate::idempotency::IdempotencyStore;
use crate::rate::ClientRates;
use crate::request::Limits;
use crate::routes;
use crate::status::StatusStore;
use crate::store::IngestStores;

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
    pub(crate) twilio: Option<crate::callbacks::TwilioVerifier>,
    pub(crate) sendgrid: Option<crate::callbacks::SendgridVerifier>,
    pub(crate) templates: crate::templates::TemplateCatalog,
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

/// Why the provider callbacks could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CallbackSetupError {
    #[error("Twilio callbacks: {0}")]
    Twilio(#[from] herald_runtime::config::SecretError),
    #[error(transparent)]
    Sendgrid(#[from] crate::callbacks::sendgrid::KeyError),
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

pub(crate) use herald_runtime::http::error;

impl Ingest {
    pub fn new(
        config: &IngestConfig,
        stores: &IngestStores,
        output: AvroProducer,
        topics: Topics,
        tracker: Option<herald_runtime::tracking::EngagementTracker>,
    ) -> Result<Self, CallbackSetupError> {
        let twilio = config
            .callbacks
            .twilio
            .as_ref()
            .map(crate::callbacks::TwilioVerifier::new)
            .transpose()?;
        let sendgrid = config
            .callbacks
            .sendgrid
            .as_ref()
            .map(|s| crate::callbacks::SendgridVerifier::new(&s.verification_key))
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
        let readiness = Arc::new(BrokerReadiness::new(
            self.shared.output.producer().clone(),
            self.shared.topics.requests(),
        ));
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
            .merge(ops_router(readiness))
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
