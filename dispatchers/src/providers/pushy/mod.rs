//! Pushy: `POST /push?api_key=...` with JSON `{to, data, notification, time_to_live}`.
//! Pushy answers 200 with `info.failed` listing tokens it does not know: that device is gone.
//! Errors carry a `code` (`INVALID_PARAM`, `INVALID_API_KEY`, `RATE_LIMIT_EXCEEDED`, ...).
//! The key travels in the query string, so URLs never appear in reasons or logs.

use std::time::Duration;

use herald_schemas::ChannelMessage;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::providers::http::{self, SetupError, exchange};
use crate::providers::{DeliveryError, Provider, SendFuture, Sent};

mod config;

pub use config::PushySettings;

pub struct PushyProvider {
    http: reqwest::Client,
    /// With the secret key in its query: never shown.
    send_url: reqwest::Url,
    time_to_live_secs: u64,
}

impl std::fmt::Debug for PushyProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushyProvider").finish_non_exhaustive()
    }
}

impl PushyProvider {
    pub fn new(name: &str, settings: &PushySettings) -> Result<Self, SetupError> {
        let base =
            settings.base_url.as_deref().unwrap_or("https://api.pushy.me").trim_end_matches('/');
        let mut send_url = reqwest::Url::parse(&format!("{base}/push"))
            .map_err(|e| SetupError::Invalid(format!("pushy base_url is not a URL: {e}")))?;
        send_url.query_pairs_mut().append_pair("api_key", &settings.api_key.read()?);
        Ok(Self {
            http: http::client(name, Duration::from_millis(settings.limits.timeout_ms), false)?,
            send_url,
            time_to_live_secs: settings.time_to_live_secs,
        })
    }

    fn body(&self, message: &ChannelMessage) -> Result<Value, DeliveryError> {
        let push = super::push_content(message)?;
        let mut data = push.data.clone();
        data.insert("notification_id".into(), message.notification_id.clone());
        data.insert("message".into(), push.body.clone());
        let mut notification = json!({"body": push.body, "sound": "default"});
        if let Some(title) = &push.title {
            data.insert("title".into(), title.clone());
            notification["title"] = json!(title);
        }
        Ok(json!({
            "to": message.target,
            "data": data,
            "notification": notification,
            "time_to_live": super::time_to_live_secs(message, self.time_to_live_secs),
        }))
    }
}

pub(crate) fn classify(status: StatusCode, retry: Option<Duration>, body: &Value) -> DeliveryError {
    let code = body["code"].as_str().unwrap_or("UNKNOWN");
    let message = body["error"].as_str().unwrap_or_default();
    let reason = format!("Pushy {} {code}: {message}", status.as_u16());
    match status.as_u16() {
        429 | 500..=599 => DeliveryError::Transient { reason, retry_after: retry },
        // A rejected key: retried, so that a rotated key fixes the backlog.
        401 => DeliveryError::Transient { reason, retry_after: None },
        _ => DeliveryError::Permanent { reason },
    }
}

impl Provider for PushyProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let body = self.body(message)?;
            let answer = exchange(self.http.post(self.send_url.clone()).json(&body)).await?;
            if !answer.status.is_success() {
                return Err(classify(answer.status, answer.retry_after(), &answer.body));
            }
            let answer = answer.body;
            let failed = answer["info"]["failed"].as_array();
            if failed.is_some_and(|f| f.iter().any(|t| t.as_str() == Some(&message.target))) {
                return Err(DeliveryError::DeadTarget {
                    reason: "Pushy: the device token is not registered".into(),
                });
            }
            Ok(Sent { provider_message_id: answer["id"].as_str().map(str::to_owned) })
        })
    }
}

#[cfg(test)]
mod tests;
