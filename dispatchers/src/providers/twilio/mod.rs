//! Twilio Programmable Messaging: `POST /2010-04-01/Accounts/{sid}/Messages.json`,
//! form-encoded, HTTP basic auth with the account SID and auth token. Twilio's error codes
//! decide the outcome: 21211/21614 (not a valid mobile number) and 21610 (the recipient
//! replied STOP) are permanent, 20429 and 5xx are transient.

use std::time::Duration;

use herald_schemas::ChannelMessage;
use reqwest::StatusCode;
use serde_json::Value;

use crate::providers::SmsOptions;
use crate::providers::http::{self, SetupError, exchange};
use crate::providers::sms::checked_text;
use crate::providers::{DeliveryError, Provider, SendFuture, Sent};

mod config;

pub use config::TwilioSettings;

pub struct TwilioProvider {
    http: reqwest::Client,
    url: String,
    account_sid: String,
    auth_token: String,
    messaging_service_sid: Option<String>,
    status_callback: Option<String>,
    sms: SmsOptions,
}

impl std::fmt::Debug for TwilioProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TwilioProvider").field("url", &self.url).finish_non_exhaustive()
    }
}

impl TwilioProvider {
    pub fn new(name: &str, settings: &TwilioSettings) -> Result<Self, SetupError> {
        if settings.sms.from.is_empty() && settings.messaging_service_sid.is_none() {
            return Err(SetupError::Invalid(
                "twilio needs sms.from or messaging_service_sid".into(),
            ));
        }
        let base =
            settings.base_url.as_deref().unwrap_or("https://api.twilio.com").trim_end_matches('/');
        Ok(Self {
            http: http::client(name, Duration::from_millis(settings.limits.timeout_ms), false)?,
            url: format!("{base}/2010-04-01/Accounts/{}/Messages.json", settings.account_sid),
            account_sid: settings.account_sid.clone(),
            auth_token: settings.auth_token.read()?,
            messaging_service_sid: settings.messaging_service_sid.clone(),
            status_callback: settings.status_callback.clone(),
            sms: settings.sms.clone(),
        })
    }
}

pub(crate) fn classify(status: StatusCode, retry: Option<Duration>, body: &Value) -> DeliveryError {
    let code = body["code"].as_u64().unwrap_or_default();
    let message = body["message"].as_str().unwrap_or_default();
    let reason = format!("Twilio {} error {code}: {message}", status.as_u16());
    match (status.as_u16(), code) {
        (429, _) | (_, 20429) | (500..=599, _) => {
            DeliveryError::Transient { reason, retry_after: retry }
        }
        // Credentials rejected: retried, so that a rotated token fixes the backlog.
        (401, _) => DeliveryError::Transient { reason, retry_after: None },
        _ => DeliveryError::Permanent { reason },
    }
}

impl Provider for TwilioProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let (text, _) = checked_text(message, &self.sms)?;
            let mut form = vec![("To", message.target.as_str()), ("Body", text)];
            match &self.messaging_service_sid {
                Some(sid) => form.push(("MessagingServiceSid", sid)),
                None => form.push(("From", &self.sms.from)),
            }
            // The notification id rides in the callback URL, so ingest needs no lookup to
            // attach Twilio's report to it.
            let callback = self.status_callback.as_ref().map(|url| {
                let separator = if url.contains('?') { '&' } else { '?' };
                format!("{url}{separator}herald_notification_id={}", message.notification_id)
            });
            if let Some(callback) = &callback {
                form.push(("StatusCallback", callback));
            }
            let request =
                self.http.post(&self.url).basic_auth(&self.account_sid, Some(&self.auth_token));
            let answer = exchange(request.form(&form)).await?;
            if answer.status.is_success() {
                let sid = answer.body["sid"].as_str().map(str::to_owned);
                return Ok(Sent { provider_message_id: sid });
            }
            Err(classify(answer.status, answer.retry_after(), &answer.body))
        })
    }
}

#[cfg(test)]
mod tests;
