//! `POST /v1/notifications` and `GET /v1/notifications/{id}`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_runtime::kafka::{AvroProduceError, Header, OwnedHeaders, wait_all};
use herald_schemas::{DeliveryEvent, EventKind, headers};
use serde_json::json;

use crate::api::{Shared, api_metrics, authenticate, error};
use crate::request::{self, SendBody};

pub(crate) async fn send(
    State(shared): State<Arc<Shared>>,
    request_headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let client_id = match authenticate(&shared, &request_headers).await {
        Ok(client_id) => client_id,
        Err(response) => return response,
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
            let field = e.path().to_string();
            let body =
                json!({"error": "invalid_json", "field": field, "message": e.inner().to_string()});
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
    let requests_topic = shared.topics.requests();
    let events_topic = shared.topics.events();
    let mut acks = Vec::with_capacity(requests.len() * 2);
    let mut accepted = Vec::with_capacity(requests.len());
    for request in &requests {
        let id_header =
            Header { key: headers::NOTIFICATION_ID, value: Some(notification_id.as_str()) };
        let mut event = DeliveryEvent::new(&notification_id, EventKind::Accepted);
        event.occurred_at = request.accepted_at;
        event.user_id = request.recipient.user_id.clone();
        event.detail.insert("client_id".into(), client_id.clone());
        let queued = async {
            let key = request.partition_key();
            let headers = Some(OwnedHeaders::new().insert(id_header));
            let request_ack = shared.output.enqueue(&requests_topic, key, request, headers).await?;
            let event_ack =
                shared.output.enqueue(&events_topic, &notification_id, &event, None).await?;
            Ok::<_, AvroProduceError>([request_ack, event_ack])
        };
        match queued.await {
            Ok(pair) => acks.extend(pair),
            Err(e) => {
                tracing::error!(error = %e, "cannot produce request");
                let message = "the request could not be queued; retry later";
                return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
            }
        }
        accepted.push(event);
    }
    if let Err(e) = wait_all(acks).await {
        tracing::error!(error = %e, "broker did not acknowledge request");
        let message = "the broker did not acknowledge the request; retry later";
        return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    }
    // The status sink stores these from herald.events too; storing them now lets the caller
    // read the status right after the 202.
    if let Err(e) = shared.status.record(accepted).await {
        tracing::warn!(error = %e, "recording acceptance in the status store failed; the status sink will");
    }
    let took = started.elapsed().as_secs_f64();
    api_metrics().produce_seconds.with_label_values(&["/v1/notifications"]).observe(took);
    let body = json!({"id": notification_id, "recipients": requests.len()});
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

pub(crate) async fn status(
    State(shared): State<Arc<Shared>>,
    request_headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let client_id = match authenticate(&shared, &request_headers).await {
        Ok(client_id) => client_id,
        Err(response) => return response,
    };
    match shared.status.status(&id).await {
        // Another client's notification is as unknown to this caller as a missing one.
        Ok(Some(status)) if status.client_id.as_deref().is_none_or(|owner| owner == client_id) => {
            Json(status).into_response()
        }
        Ok(_) => {
            error(StatusCode::NOT_FOUND, "not_found", format!("no notification {id} is known"))
        }
        Err(e) => {
            tracing::error!(error = %e, "status store unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "cannot read statuses right now")
        }
    }
}
