//! SendGrid v3 `POST /v3/mail/send`: bearer API key, one personalization per message, text
//! and HTML content, the notification id in `custom_args` (SendGrid returns it in its event
//! webhook) and as the Message-ID's local part, `List-Unsubscribe` for marketing. SendGrid
//! answers 202 with `X-Message-Id`; 400/413 are about the message (permanent), 401/403
//! about our key (transient, fixed by rotating it), 429 and 5xx transient.

use std::time::Duration;

use herald_schemas::ChannelMessage;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};

use crate::providers::Unsubscribe;
use crate::providers::email::{message_id, unsubscribe_headers};
use crate::providers::http::{self, SetupError, exchange};
use crate::providers::{DeliveryError, Provider, SendFuture, Sent};

mod config;

pub use config::SendgridSettings;

pub struct SendgridProvider {
    http: reqwest::Client,
    url: String,
    api_key: String,
    default_from: Value,
    unsubscribe: Unsubscribe,
}

impl std::fmt::Debug for SendgridProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendgridProvider").field("url", &self.url).finish_non_exhaustive()
    }
}

/// `Name <address>` or `address` as SendGrid's `{email, name}`.
fn email_object(value: &str) -> Option<Value> {
    let mailbox: lettre::message::Mailbox = value.trim().parse().ok()?;
    let email = mailbox.email.to_string();
    Some(match mailbox.name {
        Some(name) => json!({"email": email, "name": name}),
        None => json!({"email": email}),
    })
}

impl SendgridProvider {
    pub fn new(name: &str, settings: &SendgridSettings) -> Result<Self, SetupError> {
        let base = settings
            .base_url
            .as_deref()
            .unwrap_or("https://api.sendgrid.com")
            .trim_end_matches('/');
        let default_from = email_object(&settings.default_from).ok_or_else(|| {
            SetupError::Invalid(format!(
                "sendgrid default_from {:?} is not an address",
                settings.default_from
            ))
        })?;
        Ok(Self {
            http: http::client(name, Duration::from_millis(settings.limits.timeout_ms), false)?,
            url: format!("{base}/v3/mail/send"),
            api_key: settings.api_key.read()?,
            default_from,
            unsubscribe: settings.unsubscribe.clone(),
        })
    }

    fn body(&self, message: &ChannelMessage) -> Result<Value, DeliveryError> {
        let Some(email) = &message.email else {
            return Err(DeliveryError::Invalid {
                reason: "channel message has no email content".into(),
            });
        };
        let from = match message.from.as_ref().and_then(|f| f.email.as_deref()) {
            Some(address) => {
                let name = message.from.as_ref().and_then(|f| f.name.as_deref());
                json!({"email": address, "name": name})
            }
            None => self.default_from.clone(),
        };
        let mut content = Vec::new();
        if let Some(text) = &email.text {
            content.push(json!({"type": "text/plain", "value": text}));
        }
        if let Some(html) = &email.html {
            content.push(json!({"type": "text/html", "value": html}));
        }
        if content.is_empty() {
            return Err(DeliveryError::Permanent {
                reason: "the email has no text or HTML".into(),
            });
        }
        let mut headers = Map::new();
        for (name, value) in unsubscribe_headers(message, &self.unsubscribe) {
            headers.insert(name.to_owned(), json!(value));
        }
        let domain = from["email"].as_str().and_then(|a| a.rsplit_once('@')).map_or("", |(_, d)| d);
        let mut custom_args = json!({"notification_id": message.notification_id});
        if let Some(user) = &message.user_id {
            custom_args["user_id"] = json!(user);
        }
        let mut body = json!({
            "personalizations": [{"to": [{"email": message.target}], "custom_args": custom_args}],
            "from": from,
            "subject": email.subject,
            "content": content,
            "categories": [message.category],
        });
        headers.insert("Message-ID".into(), json!(message_id(message, domain)));
        body["headers"] = Value::Object(headers);
        Ok(body)
    }
}

/// `X-RateLimit-Reset`: the epoch second at which SendGrid's window resets.
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let at: i64 = headers.get("x-ratelimit-reset")?.to_str().ok()?.trim().parse().ok()?;
    let wait = at.saturating_sub(herald_schemas::now_millis() / 1000).max(1);
    Some(Duration::from_secs(u64::try_from(wait).ok()?))
}

pub(crate) fn classify(status: StatusCode, retry: Option<Duration>, body: &Value) -> DeliveryError {
    let messages: Vec<&str> = body["errors"]
        .as_array()
        .map(|errors| errors.iter().filter_map(|e| e["message"].as_str()).collect())
        .unwrap_or_default();
    let reason = format!("SendGrid {}: {}", status.as_u16(), messages.join("; "));
    match status.as_u16() {
        429 | 500..=599 => DeliveryError::Transient { reason, retry_after: retry },
        401 | 403 => DeliveryError::Transient { reason, retry_after: None },
        _ => DeliveryError::Permanent { reason },
    }
}

impl Provider for SendgridProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let body = self.body(message)?;
            let answer =
                exchange(self.http.post(&self.url).bearer_auth(&self.api_key).json(&body)).await?;
            if answer.status.is_success() {
                return Ok(Sent { provider_message_id: answer.header("x-message-id") });
            }
            let retry = answer.retry_after().or_else(|| rate_limit_reset(&answer.headers));
            Err(classify(answer.status, retry, &answer.body))
        })
    }
}

#[cfg(test)]
mod tests;
