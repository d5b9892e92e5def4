//! `GET /openapi.json`: the send API's OpenAPI 3.1 document, generated from the request and
//! response types themselves so that it cannot drift from what the handlers accept.

use axum::Json;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use herald_runtime::http::{ErrorBody, FieldError};

use crate::request::{
    ContentBody, DeviceBody, PushBody, RecipientBody, SendBody, SenderBody, SmsBody, UserId,
};
use crate::status::{
    DeliveryView, EventView, NotificationPage, NotificationStatus, NotificationSummary,
};

/// `202 Accepted`: every recipient's request is on `herald.requests`, acknowledged by the
/// broker (acks=all).
#[derive(Debug, Serialize, ToSchema)]
pub struct Accepted {
    /// The notification id, shared by every recipient of the request.
    pub id: String,
    pub recipients: usize,
}

#[utoipa::path(
    post,
    path = "/v1/notifications",
    tag = "notifications",
    request_body = SendBody,
    params(
        ("Idempotency-Key" = Option<String>, Header, pattern = "^[!-~]{1,255}$",
         description = "Same key and body within the window: the first answer again, nothing produced twice. Same key, other body: 422."),
    ),
    responses(
        (status = 202, description = "Accepted and acknowledged by the broker", body = Accepted),
        (status = 400, description = "Not JSON, or not this shape", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked key", body = ErrorBody),
        (status = 403, description = "The key's scopes exclude this channel or category", body = ErrorBody),
        (status = 409, description = "Same Idempotency-Key still in progress", body = ErrorBody),
        (status = 413, description = "Body over the configured limit", body = ErrorBody),
        (status = 422, description = "Failed validation (field path + reason), or Idempotency-Key reused with another body", body = ErrorBody),
        (status = 429, description = "Over the client's rate; see Retry-After", body = ErrorBody),
        (status = 503, description = "The broker did not acknowledge", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[allow(dead_code)] // documents crate::routes::send
fn send() {}

#[utoipa::path(
    post,
    path = "/v1/notifications/bulk",
    tag = "notifications",
    request_body(content = SendBody, description = "As for one send, with up to the configured bulk number of recipients (default 10,000); produced in acknowledged batches."),
    responses(
        (status = 202, description = "Accepted and acknowledged by the broker", body = Accepted),
        (status = 400, description = "Not JSON, or not this shape", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked key", body = ErrorBody),
        (status = 403, description = "The key's scopes exclude this channel or category", body = ErrorBody),
        (status = 413, description = "Body over the bulk limit", body = ErrorBody),
        (status = 422, description = "Failed validation", body = ErrorBody),
        (status = 429, description = "Over the client's rate; see Retry-After", body = ErrorBody),
        (status = 503, description = "The broker did not acknowledge", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[allow(dead_code)] // documents crate::routes::send_bulk
fn send_bulk() {}

#[utoipa::path(
    get,
    path = "/v1/notifications/{id}",
    tag = "notifications",
    params(("id" = String, Path, description = "The id the send answered with")),
    responses(
        (status = 200, description = "Its lifecycle per channel and target", body = NotificationStatus),
        (status = 401, description = "No key, or an unknown or revoked key", body = ErrorBody),
        (status = 404, description = "Unknown, or another client's", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[allow(dead_code)] // documents crate::routes::status
fn status() {}

#[utoipa::path(
    get,
    path = "/v1/users/{user_id}/notifications",
    tag = "notifications",
    params(
        ("user_id" = String, Path, description = "The recipient's user id"),
        ("before" = Option<i64>, Query, description = "Only those accepted before this time (ms); the previous page's next_before"),
        ("limit" = Option<usize>, Query, minimum = 1, maximum = 100, description = "At most this many (default 20)"),
    ),
    responses(
        (status = 200, description = "The caller's notifications to this user, newest first", body = NotificationPage),
        (status = 400, description = "before or limit malformed", body = ErrorBody),
        (status = 401, description = "No key, or an unknown or revoked key", body = ErrorBody),
    ),
    security(("api_key" = []))
)]
#[allow(dead_code)] // documents crate::routes::user_notifications
fn user_notifications() {}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The process is up")))]
#[allow(dead_code)] // documents herald_runtime::http::probes_router
fn healthz() {}

#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses((status = 200, description = "The API answers: a broker or store outage is \
        answered per request (503 with Retry-After), so instances stay behind the load balancer")))]
#[allow(dead_code)] // documents herald_runtime::http::probes_router
fn readyz() {}

struct BearerKey;

impl Modify for BearerKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("An API key from `herald clients add`"))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Herald send API", description = "Notifications by push, SMS and email through Kafka."),
    paths(send, send_bulk, status, user_notifications, healthz, readyz),
    components(schemas(
        SendBody, RecipientBody, UserId, DeviceBody, SenderBody, ContentBody, SmsBody, PushBody,
        FieldError, Accepted, ErrorBody, NotificationStatus, DeliveryView, EventView,
        NotificationPage, NotificationSummary
    )),
    modifiers(&BearerKey)
)]
struct ApiDoc;

/// The document, built once per call: it is small and asked for rarely.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

pub(crate) async fn serve(
    document: std::sync::Arc<utoipa::openapi::OpenApi>,
) -> Json<utoipa::openapi::OpenApi> {
    Json((*document).clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_describes_every_route_and_the_request_fields() {
        let doc = serde_json::to_value(document()).unwrap();
        for path in [
            "/v1/notifications",
            "/v1/notifications/bulk",
            "/v1/notifications/{id}",
            "/v1/users/{user_id}/notifications",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let send = &doc["components"]["schemas"]["SendBody"]["properties"];
        for field in ["to", "template_id", "data", "ttl", "collapse_key", "priority", "send_at"] {
            assert!(send[field].is_object(), "SendBody.{field} missing: {send}");
        }
        assert!(doc["components"]["schemas"]["DeviceBody"]["properties"]["token"].is_object());
        assert_eq!(doc["components"]["securitySchemes"]["api_key"]["scheme"], "bearer");
    }
}
