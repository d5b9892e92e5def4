//! JPush (Jiguang) push API v3: `POST /v3/push`, JSON, HTTP basic auth with the app key and
//! master secret, one registration id as the audience. Error codes: 1011 (no device matches
//! the registration id) means the device is gone; 2002 is the rate limit (429, with
//! `X-Rate-Limit-Reset` seconds); 1000/1030 and 5xx are transient; other 4xx are permanent.

use std::time::Duration;

use herald_schemas::ChannelMessage;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

use crate::providers::http::{self, SetupError, exchange};
use crate::providers::{DeliveryError, Provider, SendFuture, Sent};

mod config;

pub use config::JpushSettings;

pub struct JpushProvider {
    http: reqwest::Client,
    url: String,
    app_key: String,
    master_secret: String,
    apns_production: bool,
    time_to_live_secs: u64,
}

impl std::fmt::Debug for JpushProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JpushProvider").field("url", &self.url).finish_non_exhaustive()
    }
}

impl JpushProvider {
    pub fn new(name: &str, settings: &JpushSettings) -> Result<Self, SetupError> {
        let base =
            settings.base_url.as_deref().unwrap_or("https://api.jpush.cn").trim_end_matches('/');
        Ok(Self {
            http: http::client(name, Duration::from_millis(settings.limits.timeout_ms), false)?,
            url: format!("{base}/v3/push"),
            app_key: settings.app_key.clone(),
            master_secret: settings.master_secret.read()?,
            apns_production: settings.apns_production,
            time_to_live_secs: settings.time_to_live_secs,
        })
    }

    fn body(&self, message: &ChannelMessage) -> Result<Value, DeliveryError> {
        let push = super::push_content(message)?;
        let platform = message.channel.as_str();
        if !matches!(platform, "android" | "ios") {
            return Err(DeliveryError::Invalid {
                reason: format!("JPush cannot send to channel {platform}"),
            });
        }
        let mut extras = push.data.clone();
        extras.insert("notification_id".into(), message.notification_id.clone());
        let mut notification = json!({"alert": push.body, "extras": extras});
        if let Some(title) = &push.title {
            notification["title"] = json!(title);
        }
        if platform == "android" {
            // JPush's notification-bar priority: -2..2.
            notification["priority"] = json!(if super::is_urgent(message) { 2 } else { 0 });
        }
        let mut options = json!({
            "time_to_live": super::time_to_live_secs(message, self.time_to_live_secs),
            "apns_production": self.apns_production,
        });
        if platform == "ios" {
            options["apns_collapse_id"] = json!(super::collapse_id(message));
        }
        Ok(json!({
            "platform": [platform],
            "audience": {"registration_id": [message.target]},
            "notification": {platform: notification},
            "options": options,
        }))
    }
}

/// `X-Rate-Limit-Reset`: seconds until JPush's rate window resets.
fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers.get("x-rate-limit-reset")?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

pub(crate) fn classify(status: StatusCode, retry: Option<Duration>, body: &Value) -> DeliveryError {
    let code = body["error"]["code"].as_u64().unwrap_or_default();
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let reason = format!("JPush {} error {code}: {message}", status.as_u16());
    match (status.as_u16(), code) {
        (_, 1011) => DeliveryError::DeadTarget { reason },
        (429, _) | (_, 2002) => DeliveryError::Transient { reason, retry_after: retry },
        (500..=599, _) | (_, 1000 | 1030) => {
            DeliveryError::Transient { reason, retry_after: retry }
        }
        // Bad app key or secret: retried, so that rotated credentials fix the backlog.
        (401, _) | (_, 1004) => DeliveryError::Transient { reason, retry_after: None },
        _ => DeliveryError::Permanent { reason },
    }
}

impl Provider for JpushProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let body = self.body(message)?;
            let request =
                self.http.post(&self.url).basic_auth(&self.app_key, Some(&self.master_secret));
            let answer = exchange(request.json(&body)).await?;
            let retry = answer.retry_after().or_else(|| rate_limit_reset(&answer.headers));
            let (status, answer) = (answer.status, answer.body);
            if status.is_success() {
                let id = answer["msg_id"]
                    .as_str()
                    .map(str::to_owned)
                    .or_else(|| answer["msg_id"].as_u64().map(|id| id.to_string()));
                return Ok(Sent { provider_message_id: id });
            }
            Err(classify(status, retry, &answer))
        })
    }
}

#[cfg(test)]
mod tests;
