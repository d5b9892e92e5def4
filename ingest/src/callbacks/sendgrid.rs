//! SendGrid's Event Webhook: `POST /v1/callbacks/sendgrid`, a JSON array of events, signed
//! with SendGrid's ECDSA P-256 key: `X-Twilio-Email-Event-Webhook-Signature` is the base64
//! DER signature of the `X-Twilio-Email-Event-Webhook-Timestamp` value followed by the raw
//! body, checked with the verification key SendGrid shows (base64 DER SubjectPublicKeyInfo).
//! The SendGrid provider sends each mail with the custom argument `notification_id`, which
//! SendGrid repeats in every event of that mail.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_schemas::{DeliveryEvent, EventKind};
use serde_json::Value;

use super::count;
use crate::signatures::{SIGNATURE_HEADER, TIMESTAMP_HEADER};
use crate::state::Shared;

/// The `DeliveryEvent` a SendGrid event stands for, if Herald records that kind.
fn event_of(report: &Value) -> Option<DeliveryEvent> {
    let id = report["notification_id"].as_str()?;
    let kind = match report["event"].as_str()? {
        "delivered" => EventKind::Delivered,
        "bounce" | "dropped" => EventKind::Failed,
        "open" => EventKind::Opened,
        "click" => EventKind::Clicked,
        // processed, deferred (SendGrid retries), spamreport, unsubscribe, group_*: not a
        // delivery outcome.
        _ => return None,
    };
    let mut event = DeliveryEvent::new(id, kind);
    // SendGrid may post an event again: its id makes the copy harmless.
    if let Some(sg_event_id) = report["sg_event_id"].as_str() {
        event.event_id = format!("sendgrid-{sg_event_id}");
    }
    if let Some(at) = report["timestamp"].as_i64() {
        event.occurred_at = at.saturating_mul(1000);
    }
    event.channel = Some("email".into());
    event.target = report["email"].as_str().map(str::to_owned);
    event.user_id = report["user_id"].as_str().map(str::to_owned);
    event.provider = Some("sendgrid".into());
    if let Some(message_id) = report["sg_message_id"].as_str() {
        event.detail.insert("provider_message_id".into(), message_id.to_owned());
    }
    if let Some(url) = report["url"].as_str() {
        event.detail.insert("url".into(), url.to_owned());
    }
    if kind == EventKind::Failed {
        let why = report["reason"].as_str().or(report["response"].as_str()).unwrap_or("no reason");
        event.reason = Some(format!("SendGrid reported {}: {why}", report["event"]));
    }
    Some(event)
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    count("sendgrid", "refused");
    (status, reason.to_owned()).into_response()
}

pub(crate) async fn events(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(verifier) = &shared.sendgrid else {
        return refuse(StatusCode::NOT_FOUND, "SendGrid event webhooks are not configured");
    };
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(timestamp), Some(signature)) = (header(TIMESTAMP_HEADER), header(SIGNATURE_HEADER))
    else {
        return refuse(StatusCode::FORBIDDEN, "signature headers missing");
    };
    if !verifier.verify(timestamp, &body, signature) {
        tracing::warn!("SendGrid event webhook with a wrong signature refused");
        return refuse(StatusCode::FORBIDDEN, "signature does not match");
    }
    let Ok(Value::Array(reports)) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "expected a JSON array of events");
    };
    let mut failed = false;
    for report in &reports {
        let Some(event) = event_of(report) else {
            count("sendgrid", "ignored");
            continue;
        };
        match shared.emit(&event).await {
            Ok(()) => count("sendgrid", "recorded"),
            Err(error) => {
                tracing::warn!(%error, "SendGrid event not recorded");
                count("sendgrid", "unrecorded");
                failed = true;
            }
        }
    }
    if failed {
        // SendGrid posts the batch again; the events already recorded are stored once.
        return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sendgrid_events_map_to_herald_events() {
        let report = json!({"email": "a@example.com", "event": "bounce", "reason": "550 no such user",
            "sg_event_id": "e1", "sg_message_id": "m1", "timestamp": 1_700_000_000, "notification_id": "n-1"});
        let event = event_of(&report).unwrap();
        assert_eq!((event.kind, event.event_id.as_str()), (EventKind::Failed, "sendgrid-e1"));
        assert_eq!(event.occurred_at, 1_700_000_000_000);
        assert!(event.reason.unwrap().contains("550 no such user"));
        let click =
            json!({"event": "click", "url": "https://x.example.com", "notification_id": "n-1"});
        assert_eq!(event_of(&click).unwrap().detail["url"], "https://x.example.com");
        assert!(event_of(&json!({"event": "processed", "notification_id": "n-1"})).is_none());
        assert!(event_of(&json!({"event": "delivered"})).is_none(), "not a Herald mail");
    }
}
