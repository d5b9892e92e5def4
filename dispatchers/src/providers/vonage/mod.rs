//! Vonage (Nexmo) SMS API: `POST /sms/json`, form-encoded with `api_key` and `api_secret`,
//! `type=unicode` for UCS-2 texts and the notification id as `client-ref`. Vonage answers 200
//! even when it refuses: each part has its own `status`, "0" meaning accepted.

use std::time::Duration;

use herald_schemas::ChannelMessage;

use crate::providers::SmsOptions;
use crate::providers::http::{self, SetupError, exchange};
use crate::providers::sms::{Encoding, checked_text};
use crate::providers::{DeliveryError, Provider, SendFuture, Sent};

mod config;

pub use config::VonageSettings;

pub struct VonageProvider {
    http: reqwest::Client,
    url: String,
    api_key: String,
    api_secret: String,
    sms: SmsOptions,
}

impl std::fmt::Debug for VonageProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VonageProvider").field("url", &self.url).finish_non_exhaustive()
    }
}

impl VonageProvider {
    pub fn new(name: &str, settings: &VonageSettings) -> Result<Self, SetupError> {
        if settings.sms.from.is_empty() {
            return Err(SetupError::Invalid("vonage needs sms.from".into()));
        }
        let base =
            settings.base_url.as_deref().unwrap_or("https://rest.nexmo.com").trim_end_matches('/');
        Ok(Self {
            http: http::client(name, Duration::from_millis(settings.limits.timeout_ms), false)?,
            url: format!("{base}/sms/json"),
            api_key: settings.api_key.clone(),
            api_secret: settings.api_secret.read()?,
            sms: settings.sms.clone(),
        })
    }
}

/// The outcome of one refused part, by Vonage's status code.
pub(crate) fn classify_status(status: &str, error_text: &str) -> DeliveryError {
    let reason = format!("Vonage status {status}: {error_text}");
    match status {
        // Throttled: Vonage asks for fewer than 30 requests a second; back off a little.
        "1" => DeliveryError::Transient { reason, retry_after: Some(Duration::from_secs(1)) },
        // Internal error, invalid credentials (fixed by rotating them), out of credit.
        "4" | "5" | "9" => DeliveryError::Transient { reason, retry_after: None },
        _ => DeliveryError::Permanent { reason },
    }
}

impl Provider for VonageProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let (text, parts) = checked_text(message, &self.sms)?;
            let to = message.target.trim_start_matches('+');
            let mut form = vec![
                ("api_key", self.api_key.as_str()),
                ("api_secret", self.api_secret.as_str()),
                ("from", self.sms.from.as_str()),
                ("to", to),
                ("text", text),
                ("client-ref", message.notification_id.as_str()),
            ];
            if parts.encoding == Encoding::Ucs2 {
                form.push(("type", "unicode"));
            }
            let answer = exchange(self.http.post(&self.url).form(&form)).await?;
            let (status, retry) = (answer.status, answer.retry_after());
            if !status.is_success() {
                let reason = format!("Vonage answered HTTP {}", status.as_u16());
                return Err(if status.as_u16() == 429 || status.is_server_error() {
                    DeliveryError::Transient { reason, retry_after: retry }
                } else {
                    DeliveryError::Permanent { reason }
                });
            }
            let Some(parts) = answer.body["messages"].as_array().filter(|m| !m.is_empty()) else {
                return Err(DeliveryError::Transient {
                    reason: "Vonage answered without a messages list".into(),
                    retry_after: None,
                });
            };
            if let Some(refused) = parts.iter().find(|p| p["status"].as_str() != Some("0")) {
                let status = refused["status"].as_str().unwrap_or("?");
                return Err(classify_status(status, refused["error-text"].as_str().unwrap_or("")));
            }
            let id = parts[0]["message-id"].as_str().map(str::to_owned);
            Ok(Sent { provider_message_id: id })
        })
    }
}

#[cfg(test)]
mod tests;
