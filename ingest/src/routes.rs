//! `POST /v1/notifications` and `GET /v1/notifications/{id}`.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_runtime::kafka::{AvroProduceError, Header, OwnedHeaders, wait_all};
use herald_schemas::{DeliveryEvent, EventKind, NotificationRequest, headers};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::clients::{Caller, ClientPolicy};
use crate::idempotency::{self, Begin};
use crate::request::{self, FieldError, SendBody};
use crate::state::{Shared, api_metrics, authenticate, error};
use crate::templates::TemplateRefusal;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(crate) async fn send(
    State(shared): State<Arc<Shared>>,
    request_headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = Route { limits: shared.limits, max_body_bytes: shared.max_body_bytes };
    handle_send(&shared, &request_headers, body, route).await
}

/// Many recipients in one request, produced in batches.
pub(crate) async fn send_bulk(
    State(shared): State<Arc<Shared>>,
    request_headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let route = Route { limits: shared.bulk_limits, max_body_bytes: shared.bulk_max_body_bytes };
    handle_send(&shared, &request_headers, body, route).await
}

/// What differs between the send routes.
#[derive(Clone, Copy)]
struct Route {
    limits: request::Limits,
    max_body_bytes: usize,
}

/// Records produced before waiting for the broker's acknowledgements: bounds a bulk
/// request's memory without a round trip per recipient.
const ACK_BATCH: usize = 1_000;

async fn handle_send(
    shared: &Shared,
    request_headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    route: Route,
) -> Response {
    let caller = match authenticate(shared, request_headers).await {
        Ok(caller) => caller,
        Err(response) => return response,
    };
    if let Some(refused) = crate::state::over_rate(shared, &caller) {
        return refused;
    }
    let client_id = caller.client_id.as_str();
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            let message = format!("request body is larger than {} bytes", route.max_body_bytes);
            return error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", message);
        }
        Err(rejection) => return error(rejection.status(), "bad_request", rejection.body_text()),
    };
    let parsed: Result<SendBody, _> =
        serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(&body));
    let parsed = match parsed {
        Ok(parsed) => parsed,
        Err(e) => return herald_runtime::http::invalid_json(e.path().to_string(), e.inner()),
    };
    let key = match request_headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(key)) if idempotency::valid_key(key) => Some(key.to_owned()),
        Some(_) => {
            let message = "Idempotency-Key must be 1 to 255 visible ASCII characters";
            return error(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message);
        }
    };
    let proposed = uuid::Uuid::now_v7().to_string();
    let Some(key) = key else {
        let (status, answer) = accept(shared, (parsed, route.limits), &caller, &proposed).await;
        return respond(shared, status, answer);
    };
    let body_hash = hex::encode(Sha256::digest(&body));
    let now = herald_schemas::now_millis();
    let begun = shared.idempotency.begin(client_id, &key, &body_hash, &proposed, now).await;
    let notification_id = match begun {
        Ok(Begin::Proceed { notification_id }) => notification_id,
        Ok(Begin::Replay { status, response }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            let mut replayed = (status, response).into_response();
            replayed
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            replayed.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
            return replayed;
        }
        Ok(Begin::Mismatch) => {
            let message = "this Idempotency-Key was used with a different request body";
            return error(StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused", message);
        }
        Ok(Begin::InProgress) => {
            let message = "a request with this Idempotency-Key is still being processed";
            return error(StatusCode::CONFLICT, "idempotency_key_in_use", message);
        }
        Err(e) => {
            tracing::error!(error = %e, "idempotency store unavailable");
            let message = "cannot check the Idempotency-Key right now; retry later";
            return error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
        }
    };
    let (status, answer) = accept(shared, (parsed, route.limits), &caller, &notification_id).await;
    let recorded = if status == StatusCode::ACCEPTED {
        shared.idempotency.finish(client_id, &key, status.as_u16(), &answer.to_string()).await
    } else if status.is_client_error() {
        // Nothing was produced: the key is free for a corrected request.
        shared.idempotency.abandon(client_id, &key).await
    } else {
        // Part may have been produced (or may still be: the broker did not answer in time).
        // A retry takes the claim over at once and produces again under the same
        // notification id, which is sent once.
        shared.idempotency.release(client_id, &key, herald_schemas::now_millis()).await
    };
    if let Err(e) = recorded {
        // A retry then waits out the claim and produces again under the same id.
        tracing::warn!(error = %e, "could not record the Idempotency-Key's outcome");
    }
    respond(shared, status, answer)
}

/// The answer to a send; a 503 says when to retry: after a broker's wait has passed.
fn respond(shared: &Shared, status: StatusCode, answer: Value) -> Response {
    let mut response = (status, Json(answer)).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        let seconds = shared.send_wait.as_secs_f64().ceil().max(1.0);
        if let Ok(value) = HeaderValue::from_str(&format!("{seconds}")) {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
    }
    response
}

/// The 422 answer: every failed rule, and the first one in the message.
fn validation_failed(errors: Vec<FieldError>) -> Value {
    serde_json::to_value(herald_runtime::http::validation_failed(errors)).unwrap_or_default()
}

/// Validates and produces a parsed request under `notification_id`: the answer to give.
async fn accept(
    shared: &Shared,
    (parsed, limits): (SendBody, request::Limits),
    caller: &Caller,
    notification_id: &str,
) -> (StatusCode, Value) {
    let client_id = caller.client_id.as_str();
    let unavailable = |message: &str| {
        (StatusCode::SERVICE_UNAVAILABLE, json!({"error": "unavailable", "message": message}))
    };
    let requests = match request::validate(parsed, limits, notification_id, client_id) {
        Ok(requests) => requests,
        Err(errors) => return (StatusCode::UNPROCESSABLE_ENTITY, validation_failed(errors)),
    };
    let template = requests.first().and_then(|r| r.template.as_ref());
    let refusal = match template {
        Some(t) => shared.templates.refusal_caught_up(&t.id, &t.data).await.map(|r| (t, r)),
        None => None,
    };
    if let Some((template, refusal)) = refusal {
        let id = &template.id;
        let error = match refusal {
            TemplateRefusal::Unknown => FieldError {
                field: "template_id".into(),
                reason: format!(
                    "no template {id:?} is known (create it with PUT /v1/templates/{{template_id}})"
                ),
            },
            TemplateRefusal::MissingVariables(missing) => FieldError {
                field: "data".into(),
                reason: format!("template {id:?} needs variable(s) {}", missing.join(", ")),
            },
        };
        return (StatusCode::UNPROCESSABLE_ENTITY, validation_failed(vec![error]));
    }
    if let Some(refusal) = requests.first().and_then(|r| out_of_scope(&caller.policy, r)) {
        return (StatusCode::FORBIDDEN, json!({"error": "forbidden", "message": refusal}));
    }

    let started = Instant::now();
    let produced = tokio::time::timeout(
        shared.send_wait,
        produce(shared, &requests, notification_id, client_id),
    )
    .await;
    let accepted = match produced {
        Ok(Ok(accepted)) => accepted,
        Ok(Err(message)) => return unavailable(message),
        Err(_) => {
            let wait = shared.send_wait.as_millis();
            tracing::error!(wait_ms = wait, "broker did not acknowledge a send in time");
            return unavailable(&format!(
                "the broker did not acknowledge the request within {wait} ms; retry later (with the same Idempotency-Key it is the same notification)"
            ));
        }
    };
    // The status sink stores these from herald.events too; storing them now lets the caller
    // read the status right after the 202.
    if let Err(e) = shared.status.record(accepted).await {
        tracing::warn!(error = %e, "recording acceptance in the status store failed; the status sink will");
    }
    let took = started.elapsed().as_secs_f64();
    api_metrics().produce_seconds.with_label_values(&["/v1/notifications"]).observe(took);
    (StatusCode::ACCEPTED, json!({"id": notification_id, "recipients": requests.len()}))
}

/// Produces each request and its events, and waits for the broker's acknowledgements: the
/// `accepted` events, or why the caller should retry.
async fn produce(
    shared: &Shared,
    requests: &[NotificationRequest],
    notification_id: &str,
    client_id: &str,
) -> Result<Vec<DeliveryEvent>, &'static str> {
    let events_topic = shared.topics.events();
    let mut acks = Vec::with_capacity(requests.len() * 2);
    let mut accepted = Vec::with_capacity(requests.len());
    for request in requests {
        let id_header = Header { key: headers::NOTIFICATION_ID, value: Some(notification_id) };
        let mut event = DeliveryEvent::new(notification_id, EventKind::Accepted);
        event.occurred_at = request.accepted_at;
        event.user_id = request.recipient.user_id.clone();
        event.detail.insert("client_id".into(), client_id.to_owned());
        // A request for later waits in the delay tiers; the enricher's scheduler moves it on.
        let now = herald_schemas::now_millis();
        let (topic, due_at) =
            shared.topics.next_stop(request.send_at.unwrap_or(now), request.lane(), now);
        let due_at = due_at.map(|at| at.to_string());
        let mut scheduled = None;
        if let Some(at) = request.send_at {
            let mut event = DeliveryEvent::new(notification_id, EventKind::Scheduled);
            event.user_id = request.recipient.user_id.clone();
            event.detail.insert("send_at".into(), at.to_string());
            scheduled = Some(event);
        }
        let queued = async {
            let key = request.partition_key();
            let mut record_headers = OwnedHeaders::new().insert(id_header);
            if let Some(due_at) = &due_at {
                let due = Header { key: headers::DUE_AT, value: Some(due_at.as_str()) };
                record_headers = record_headers.insert(due);
            }
            let request_ack =
                shared.output.enqueue(&topic, key, request, Some(record_headers)).await?;
            let event_ack =
                shared.output.enqueue(&events_topic, notification_id, &event, None).await?;
            let mut queued = vec![request_ack, event_ack];
            if let Some(scheduled) = &scheduled {
                queued.push(
                    shared.output.enqueue(&events_topic, notification_id, scheduled, None).await?,
                );
            }
            Ok::<_, AvroProduceError>(queued)
        };
        match queued.await {
            Ok(queued) => acks.extend(queued),
            Err(e) => {
                tracing::error!(error = %e, "cannot produce request");
                return Err("the request could not be queued; retry later");
            }
        }
        accepted.push(event);
        if acks.len() >= ACK_BATCH
            && let Err(e) = wait_all(std::mem::take(&mut acks)).await
        {
            tracing::error!(error = %e, "broker did not acknowledge request");
            return Err("the broker did not acknowledge the request; retry later");
        }
    }
    if let Err(e) = wait_all(acks).await {
        tracing::error!(error = %e, "broker did not acknowledge request");
        return Err("the broker did not acknowledge the request; retry later");
    }
    Ok(accepted)
}

/// Why `policy` forbids `request`: a channel it asks for (or carries content for) or its
/// category.
fn out_of_scope(policy: &ClientPolicy, request: &NotificationRequest) -> Option<String> {
    let mut channels: Vec<&str> = request.channels.iter().map(String::as_str).collect();
    if channels.is_empty() {
        let carried = [
            ("email", request.email.is_some()),
            ("sms", request.sms.is_some()),
            ("push", request.push.is_some()),
        ];
        channels = carried.into_iter().filter(|(_, has)| *has).map(|(c, _)| c).collect();
    }
    channels.into_iter().find_map(|channel| policy.refuses(channel, &request.category))
}

pub(crate) async fn status(
    State(shared): State<Arc<Shared>>,
    request_headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let client_id = match authenticate(&shared, &request_headers).await {
        Ok(caller) => caller.client_id,
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

/// `?before=` and `?limit=` of a user's list.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct PageQuery {
    before: Option<i64>,
    limit: Option<usize>,
}

pub(crate) async fn user_notifications(
    State(shared): State<Arc<Shared>>,
    request_headers: HeaderMap,
    Path(user_id): Path<String>,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let client_id = match authenticate(&shared, &request_headers).await {
        Ok(caller) => caller.client_id,
        Err(response) => return response,
    };
    let Ok(axum::extract::Query(page)) = query else {
        let message = "before must be a time in ms since the epoch and limit a number (1-100)";
        return error(StatusCode::BAD_REQUEST, "invalid_query", message);
    };
    let limit = page.limit.unwrap_or(20);
    if !(1..=crate::status::MAX_PAGE).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, "invalid_query", "limit must be 1 to 100");
    }
    match shared.status.for_user(&user_id, &client_id, page.before, limit).await {
        Ok(page) => Json(page).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "status store unavailable");
            error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "cannot read statuses right now")
        }
    }
}
