//! Twilio's status callbacks: `POST /v1/callbacks/twilio`, form-encoded, signed in
//! `X-Twilio-Signature`. The Twilio provider adds the notification id to its status callback
//! URL, so a report needs no lookup and may arrive before the `sent` event it follows.

use std::sync::Arc;

use axum::Form;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use herald_schemas::{DeliveryEvent, EventKind};

use super::count;

use crate::state::Shared;

/// The query parameter the Twilio provider adds to its status callback URL.
pub const NOTIFICATION_PARAM: &str = "herald_notification_id";

fn outcome(label: &str) {
    count("twilio", label);
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    outcome("refused");
    (status, reason.to_owned()).into_response()
}

/// The notification id the provider put in the callback URL.
fn notification_id(query: Option<&str>) -> Option<String> {
    let value = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(NOTIFICATION_PARAM)?.strip_prefix('='))?;
    let plausible = !value.is_empty()
        && value.len() <= 64
        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plausible.then(|| value.to_owned())
}

pub(crate) async fn twilio(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    form: Result<Form<Vec<(String, String)>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Some(verifier) = &shared.twilio else {
        return refuse(StatusCode::NOT_FOUND, "Twilio callbacks are not configured");
    };
    let Ok(Form(params)) = form else {
        return refuse(StatusCode::BAD_REQUEST, "expected a form-encoded body");
    };
    let signature = headers.get("x-twilio-signature").and_then(|v| v.to_str().ok());
    if !signature.is_some_and(|s| verifier.verify(query.as_deref(), &params, s)) {
        tracing::warn!("Twilio callback with a missing or wrong signature refused");
        return refuse(StatusCode::FORBIDDEN, "signature does not match");
    }
    let param = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let (Some(id), Some(sid), Some(status)) =
        (notification_id(query.as_deref()), param("MessageSid"), param("MessageStatus"))
    else {
        return refuse(StatusCode::BAD_REQUEST, "not a Herald message's status callback");
    };
    let kind = match status {
        "delivered" => EventKind::Delivered,
        "undelivered" | "failed" => EventKind::Failed,
        // queued, sending, sent, accepted, scheduled: on the way; Herald's own `sent` says so.
        _ => {
            outcome("ignored");
            return StatusCode::NO_CONTENT.into_response();
        }
    };
    let mut event = DeliveryEvent::new(&id, kind);
    // Twilio retries a callback it got no answer to: the same id makes the copy harmless.
    event.event_id = format!("twilio-{sid}-{status}");
    event.channel = Some("sms".into());
    event.target = param("To").map(str::to_owned);
    event.provider = Some("twilio".into());
    event.detail.insert("provider_message_id".into(), sid.to_owned());
    if kind == EventKind::Failed {
        let code = param("ErrorCode").unwrap_or("unknown");
        event.reason = Some(format!("Twilio reported {status} (error {code})"));
    }
    let produced = shared.emit(&event).await;
    match produced {
        Ok(()) => {
            outcome("recorded");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            // A 5xx makes Twilio try again later.
            tracing::warn!(%error, "Twilio status not recorded");
            outcome("unrecorded");
            (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_notification_id_comes_from_the_callback_url_and_must_look_like_one() {
        assert_eq!(notification_id(Some("herald_notification_id=01a2-b3")), Some("01a2-b3".into()));
        assert_eq!(notification_id(Some("x=1&herald_notification_id=n_1")), Some("n_1".into()));
        assert_eq!(notification_id(Some("herald_notification_id=%27or")), None);
        assert_eq!(notification_id(None), None);
    }
}
