//! Twilio's status callbacks: `POST /v1/callbacks/twilio`, form-encoded, signed in
//! `X-Twilio-Signature`. The Twilio provider adds the notification id to its status callback
//! URL, so a report needs no lookup and may arrive before the `sent` event it follows.

use std::sync::Arc;

use axum::Form;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald_runtime::config::SecretError;
use herald_schemas::{DeliveryEvent, EventKind};
use ring::hmac;

use super::count;

use crate::api::Shared;
use crate::config::TwilioCallbacks;

/// The query parameter the Twilio provider adds to its status callback URL.
pub const NOTIFICATION_PARAM: &str = "herald_notification_id";

/// Checks Twilio's request signatures.
#[derive(Debug, Clone)]
pub struct TwilioVerifier {
    /// The callback URL without its query: the query is the one each request arrives with.
    base_url: String,
    key: hmac::Key,
}

impl TwilioVerifier {
    pub fn new(config: &TwilioCallbacks) -> Result<Self, SecretError> {
        let base_url = config.url.split('?').next().unwrap_or_default().to_owned();
        let token = config.auth_token.read()?;
        Ok(Self {
            base_url,
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes()),
        })
    }

    /// Twilio's scheme: base64 of HMAC-SHA1 under the auth token over the full URL followed by
    /// each POST parameter's name and value, sorted by name.
    fn expected(&self, query: Option<&str>, params: &[(String, String)]) -> hmac::Tag {
        let mut signed = self.base_url.clone();
        if let Some(query) = query.filter(|q| !q.is_empty()) {
            signed.push('?');
            signed.push_str(query);
        }
        let mut sorted: Vec<&(String, String)> = params.iter().collect();
        sorted.sort();
        for (name, value) in sorted {
            signed.push_str(name);
            signed.push_str(value);
        }
        hmac::sign(&self.key, signed.as_bytes())
    }

    pub fn verify(
        &self,
        query: Option<&str>,
        params: &[(String, String)],
        signature: &str,
    ) -> bool {
        let Ok(given) = STANDARD.decode(signature.trim()) else { return false };
        let expected = self.expected(query, params);
        // Equal length first, then a comparison that does not stop at the first difference.
        given.len() == expected.as_ref().len()
            && given.iter().zip(expected.as_ref()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The signature Twilio would send (for tests and local stand-ins).
    pub fn sign(&self, query: Option<&str>, params: &[(String, String)]) -> String {
        STANDARD.encode(self.expected(query, params).as_ref())
    }
}

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

    fn verifier() -> TwilioVerifier {
        TwilioVerifier {
            base_url: "https://mycompany.com/myapp.php".into(),
            key: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, b"12345"),
        }
    }

    #[test]
    fn twilios_documented_example_signature_verifies() {
        // The example of Twilio's signature validation snippets (TwilioDevEd/api-snippets).
        let params: Vec<(String, String)> = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let query = Some("foo=1&bar=2");
        assert_eq!(verifier().sign(query, &params), "GvWf1cFY/Q7PnoempGyD5oXAezc=");
        assert!(verifier().verify(query, &params, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
        let mut changed = params.clone();
        changed[2].1 = "9999".into();
        assert!(!verifier().verify(query, &changed, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
        assert!(!verifier().verify(Some("foo=1"), &params, "GvWf1cFY/Q7PnoempGyD5oXAezc="));
        assert!(!verifier().verify(query, &params, "not base64!"));
    }

    #[test]
    fn the_notification_id_comes_from_the_callback_url_and_must_look_like_one() {
        assert_eq!(notification_id(Some("herald_notification_id=01a2-b3")), Some("01a2-b3".into()));
        assert_eq!(notification_id(Some("x=1&herald_notification_id=n_1")), Some("n_1".into()));
        assert_eq!(notification_id(Some("herald_notification_id=%27or")), None);
        assert_eq!(notification_id(None), None);
    }
}
