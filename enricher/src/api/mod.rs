//! The directory API: users, their devices and preferences, and templates, over HTTP. It
//! runs in the send API's process, behind its keys (the `herald` binary mounts it there), and
//! writes as every other writer does: a change to `herald.directory.changes` (a template to
//! `herald.templates`), answered once the enricher applied it, with the directory's state
//! read back. A write the enricher did not apply within `enricher.directory_api_wait_ms` is
//! answered 202: it is durable and will be applied. A refused write writes nothing.

// A handler's helpers answer with a `Response` either way, once per request: boxing the
// refusal would buy nothing.
#![allow(clippy::result_large_err)]

mod applied;
pub mod docs;
mod templates;
mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use herald_runtime::http::{FieldError, error, invalid_json, validation_failed};
use herald_runtime::kafka::Ack;

use serde::Serialize;

use crate::changes::DirectoryWriter;
use crate::directory::{Directory, DirectoryError};
use crate::templates::Renderer;
use applied::Applied;

/// `202 Accepted`: the write is on its topic, acknowledged, and not applied yet.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Queued {
    /// Always `accepted`.
    pub status: &'static str,
    pub message: String,
}

pub struct DirectoryApi<D> {
    store: Arc<D>,
    writer: DirectoryWriter,
    applied: Arc<Applied<D>>,
    renderer: Renderer,
    wait: Duration,
}

impl<D> std::fmt::Debug for DirectoryApi<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryApi").field("wait", &self.wait).finish_non_exhaustive()
    }
}

impl<D: Directory> DirectoryApi<D> {
    /// Reads `store`, writes with `writer`, and waits up to `wait` for each write to be
    /// applied. Starts the task that watches the store's progress.
    pub fn new(store: Arc<D>, writer: DirectoryWriter, wait: Duration) -> Self {
        let applied = Applied::start(Arc::clone(&store));
        Self { store, writer, applied, renderer: Renderer::default(), wait }
    }

    /// The routes, and their OpenAPI document.
    pub fn router(self) -> (Router, utoipa::openapi::OpenApi) {
        let routes = Router::new()
            .route(
                "/v1/users/{user_id}",
                get(users::get::<D>)
                    .put(users::put::<D>)
                    .patch(users::patch::<D>)
                    .delete(users::delete::<D>),
            )
            .route("/v1/users/{user_id}/devices", get(users::devices::<D>))
            .route(
                "/v1/users/{user_id}/devices/{device_id}",
                get(users::device::<D>)
                    .put(users::put_device::<D>)
                    .delete(users::delete_device::<D>),
            )
            .route(
                "/v1/users/{user_id}/preferences",
                get(users::preferences::<D>).put(users::put_preferences::<D>),
            )
            .route("/v1/templates", get(templates::list::<D>))
            .route(
                "/v1/templates/{template_id}",
                get(templates::get::<D>).put(templates::put::<D>).delete(templates::delete::<D>),
            )
            .with_state(Arc::new(self));
        (routes, docs::document())
    }

    /// Waits for the write `enqueued` (on `topic`) to be applied; `Err` is the answer when
    /// it was not written (503), not applied within the wait (202), or the caller asked for
    /// no wait (202 once durable).
    async fn apply(
        &self,
        topic: &str,
        enqueued: Result<Ack, impl std::fmt::Display>,
        Respond(wait): Respond,
    ) -> Result<(), Response> {
        let ack = enqueued.map_err(|e| not_written(&e))?;
        let (partition, offset) = ack.wait().await.map_err(|e| not_written(&e))?;
        if !wait {
            let message = "the change is durable; the enricher applies it in a moment, and a send made from now on sees it";
            return Err(accepted(message.to_owned()));
        }
        if self.applied.wait(topic, partition, offset, self.wait).await {
            Ok(())
        } else {
            Err(queued(self.wait))
        }
    }

    fn changes_topic(&self) -> String {
        self.writer.topics().directory_changes()
    }
}

/// The 202 answer to a write not applied within the wait.
fn queued(wait: Duration) -> Response {
    accepted(format!(
        "the change is durable and will be applied; it was not applied within {} ms (is an enricher running?)",
        wait.as_millis()
    ))
}

fn accepted(message: String) -> Response {
    (StatusCode::ACCEPTED, axum::Json(Queued { status: "accepted", message })).into_response()
}

/// Whether a write waits for the enricher to apply it: unless the caller sends
/// `Prefer: respond-async` (RFC 7240), to be answered 202 as soon as the change is durable.
/// Either way the next send to the user sees the change.
struct Respond(bool);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Respond {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let asynchronous = parts.headers.get_all("prefer").iter().any(|value| {
            value.to_str().is_ok_and(|v| {
                v.split([',', ';']).any(|p| p.trim().eq_ignore_ascii_case("respond-async"))
            })
        });
        Ok(Self(!asynchronous))
    }
}

fn unavailable(e: &DirectoryError) -> Response {
    tracing::warn!(error = %e, "directory store unavailable");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the directory cannot be read right now; try again",
    )
}

/// The 503 answer to a change the broker did not take.
fn not_written(e: &dyn std::fmt::Display) -> Response {
    tracing::warn!(error = %e, "a directory write was not acknowledged");
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the change could not be written; try again",
    )
}

fn refused(errors: Vec<FieldError>) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(validation_failed(errors))).into_response()
}

fn not_found(what: impl std::fmt::Display) -> Response {
    error(StatusCode::NOT_FOUND, "not_found", what)
}

/// What a handler answers: its answer, or the refusal that cut it short (either way a
/// response, so `?` ends a handler with a refusal).
type Answer = Result<Response, Response>;

/// A JSON body of type `T`, or the 400/413 answer naming where it broke.
struct Body<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let bytes =
            Bytes::from_request(request, state).await.map_err(|rejection: BytesRejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", rejection.body_text())
                } else {
                    error(rejection.status(), "bad_request", rejection.body_text())
                }
            })?;
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&bytes))
            .map(Body)
            .map_err(|e| invalid_json(e.path().to_string(), e.inner()))
    }
}

/// A path's parameters, or the 400 answer when they cannot be read.
async fn path<T: serde::de::DeserializeOwned + Send, S: Send + Sync>(
    parts: &mut axum::http::request::Parts,
    state: &S,
) -> Result<T, Response> {
    use axum::extract::FromRequestParts as _;
    axum::extract::Path::<T>::from_request_parts(parts, state)
        .await
        .map(|axum::extract::Path(value)| value)
        .map_err(|e| error(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))
}
