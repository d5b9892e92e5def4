//! Apple Push Notification service over HTTP/2: `POST /3/device/{token}` with apns-topic,
//! apns-push-type, apns-priority, apns-expiration, apns-collapse-id and apns-id headers, and
//! either a provider token (ES256 JWT from a .p8 key, renewed before Apple's one-hour limit
//! and no more often than every 20 minutes) or a TLS client certificate. Payloads are built
//! with `a2`; Apple's error reasons are mapped with `a2::ErrorReason`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use a2::ErrorReason;
use a2::request::notification::{
    DefaultNotificationBuilder, NotificationBuilder, NotificationOptions,
};
use a2::request::payload::PayloadLike;
use herald_schemas::ChannelMessage;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use crate::providers::http;
use crate::providers::jwt::{KeyError, Signer};
use crate::providers::{DeliveryError, Provider, SendFuture, Sent};

mod config;

pub use config::{ApnsAuth, ApnsSettings, DEFAULT_APNS_CONNECTIONS};

/// Apple rejects provider tokens older than an hour and refreshing more than every 20 min.
const TOKEN_LIFETIME: Duration = Duration::from_secs(40 * 60);
/// Apple refuses larger payloads (PayloadTooLarge).
const MAX_PAYLOAD: usize = 4096;
/// How long APNs keeps trying to reach an offline device.
const STORE_FOR_SECS: i64 = 24 * 3600;

#[derive(Debug, thiserror::Error)]
pub enum ApnsSetupError {
    #[error(transparent)]
    Secret(#[from] herald_runtime::config::SecretError),
    #[error("the APNs .p8 key: {0}")]
    Key(#[from] KeyError),
    #[error("the APNs client certificate: {0}")]
    Certificate(String),
    #[error(transparent)]
    Client(#[from] http::ClientError),
}

#[derive(Debug)]
struct ProviderToken {
    signer: Signer,
    team_id: String,
    key_id: String,
    cached: Mutex<Option<(String, Instant)>>,
}

impl ProviderToken {
    /// The cached token, or a new one; one lock, held without awaiting, so sends share the
    /// token without queueing behind each other.
    fn get(&self) -> Result<String, DeliveryError> {
        let mut cached = self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((token, made)) = cached.as_ref()
            && made.elapsed() < TOKEN_LIFETIME
        {
            return Ok(token.clone());
        }
        let claims = json!({"iss": self.team_id, "iat": herald_schemas::now_millis() / 1000});
        let token = self.signer.sign(&json!({"kid": self.key_id}), &claims).map_err(|e| {
            DeliveryError::Transient {
                reason: format!("cannot sign the APNs provider token: {e}"),
                retry_after: None,
            }
        })?;
        *cached = Some((token.clone(), Instant::now()));
        Ok(token)
    }

    fn invalidate(&self) {
        *self.cached.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    }
}

#[derive(Debug)]
pub struct ApnsProvider {
    /// One client per HTTP/2 connection: a connection carries its streams through one
    /// task on each side, so sends are spread over `connections` of them, as Apple
    /// suggests for large volumes.
    connections: Vec<reqwest::Client>,
    next_connection: AtomicUsize,
    base: String,
    token: Option<ProviderToken>,
    topic: String,
    topics: std::collections::BTreeMap<String, String>,
}

impl ApnsProvider {
    pub fn new(name: &str, settings: &ApnsSettings) -> Result<Self, ApnsSetupError> {
        let base = settings
            .base_url
            .as_deref()
            .unwrap_or("https://api.push.apple.com")
            .trim_end_matches('/')
            .to_owned();
        let timeout = Duration::from_millis(settings.limits.timeout_ms);
        // APNs speaks only HTTP/2: over TLS it is negotiated, in clear (stand-ins) it must
        // be spoken from the first byte.
        let prior_knowledge = base.starts_with("http://");
        let count = settings.connections.max(1);
        let (connections, token) = match &settings.auth {
            ApnsAuth::Token { team_id, key_id, key } => {
                let signer = Signer::es256(&key.read()?)?;
                let token = ProviderToken {
                    signer,
                    team_id: team_id.clone(),
                    key_id: key_id.clone(),
                    cached: Mutex::new(None),
                };
                let connections = (0..count)
                    .map(|_| http::client(name, timeout, prior_knowledge))
                    .collect::<Result<_, _>>()?;
                (connections, Some(token))
            }
            ApnsAuth::Certificate { identity } => {
                herald_schemas::install_tls_provider();
                let pem = identity.read()?;
                let identity = reqwest::Identity::from_pem(pem.as_bytes())
                    .map_err(|e| ApnsSetupError::Certificate(e.to_string()))?;
                let connection = || {
                    let mut builder =
                        reqwest::Client::builder().timeout(timeout).identity(identity.clone());
                    if prior_knowledge {
                        builder = builder.http2_prior_knowledge();
                    }
                    builder.build().map_err(|e| ApnsSetupError::Certificate(e.to_string()))
                };
                ((0..count).map(|_| connection()).collect::<Result<_, _>>()?, None)
            }
        };
        Ok(Self {
            connections,
            next_connection: AtomicUsize::new(0),
            base,
            token,
            topic: settings.topic.clone(),
            topics: settings.topics.clone(),
        })
    }

    fn connection(&self) -> &reqwest::Client {
        let turn = self.next_connection.fetch_add(1, Ordering::Relaxed);
        &self.connections[turn % self.connections.len()]
    }

    fn topic_for(&self, message: &ChannelMessage) -> &str {
        message
            .app_id
            .as_deref()
            .and_then(|app| self.topics.get(app))
            .map_or(self.topic.as_str(), String::as_str)
    }

    /// The aps payload (a2) with the message's data and notification id.
    fn payload(message: &ChannelMessage) -> Result<String, DeliveryError> {
        let push = super::push_content(message)?;
        let mut builder =
            DefaultNotificationBuilder::new().set_body(&push.body).set_sound("default");
        if let Some(title) = &push.title {
            builder = builder.set_title(title);
        }
        let mut payload = builder.build(&message.target, NotificationOptions::default());
        let invalid = |e: a2::Error| DeliveryError::Invalid {
            reason: format!("cannot build the APNs payload: {e}"),
        };
        for (key, value) in &push.data {
            payload.add_custom_data(key, value).map_err(invalid)?;
        }
        payload.add_custom_data("notification_id", &message.notification_id).map_err(invalid)?;
        let json = payload.to_json_string().map_err(invalid)?;
        if json.len() > MAX_PAYLOAD {
            return Err(DeliveryError::Permanent {
                reason: format!(
                    "APNs payload is {} bytes, above Apple's {MAX_PAYLOAD}",
                    json.len()
                ),
            });
        }
        Ok(json)
    }
}

/// A UUID for `apns-id`, stable for one (notification, device): a resend carries the same id.
pub fn apns_id(message: &ChannelMessage) -> String {
    let digest =
        Sha256::digest(format!("{}/{}", message.notification_id, message.target).as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x50; // version 5-style: name based
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let h = hex::encode(b);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
        .to_uppercase()
}

pub(crate) fn classify(status: StatusCode, retry: Option<Duration>, body: &Value) -> DeliveryError {
    let reason_text = body["reason"].as_str().unwrap_or("unknown");
    let reason = format!("APNs {} {reason_text}", status.as_u16());
    let parsed: Option<ErrorReason> = serde_json::from_value(body["reason"].clone()).ok();
    use ErrorReason as R;
    match parsed {
        Some(R::BadDeviceToken | R::Unregistered | R::DeviceTokenNotForTopic) => {
            DeliveryError::DeadTarget { reason }
        }
        Some(
            R::ExpiredProviderToken
            | R::InvalidProviderToken
            | R::MissingProviderToken
            | R::TooManyProviderTokenUpdates,
        ) => DeliveryError::Transient { reason, retry_after: None },
        // Apple gives no Retry-After on TooManyRequests: back off a little for every send.
        Some(R::TooManyRequests) => DeliveryError::Transient {
            reason,
            retry_after: Some(retry.unwrap_or(Duration::from_secs(1))),
        },
        Some(R::InternalServerError | R::ServiceUnavailable | R::Shutdown | R::IdleTimeout) => {
            DeliveryError::Transient { reason, retry_after: retry }
        }
        _ if status.is_server_error() => DeliveryError::Transient { reason, retry_after: retry },
        _ => DeliveryError::Permanent { reason },
    }
}

impl Provider for ApnsProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let payload = Self::payload(message)?;
            let urgent = super::is_urgent(message);
            let expiration = match message.expires_at {
                Some(at) => at / 1000,
                None => herald_schemas::now_millis() / 1000 + STORE_FOR_SECS,
            };
            let url = format!("{}/3/device/{}", self.base, message.target);
            let mut request = self
                .connection()
                .post(url)
                .header("apns-topic", self.topic_for(message))
                .header("apns-push-type", "alert")
                .header("apns-priority", if urgent { "10" } else { "5" })
                .header("apns-expiration", expiration.to_string())
                .header("apns-collapse-id", super::collapse_id(message))
                .header("apns-id", apns_id(message))
                .header("content-type", "application/json")
                .body(payload);
            if let Some(token) = &self.token {
                request = request.header("authorization", format!("bearer {}", token.get()?));
            }
            let answer = http::exchange(request).await?;
            if answer.status.is_success() {
                return Ok(Sent { provider_message_id: answer.header("apns-id") });
            }
            let (error, body) =
                (classify(answer.status, answer.retry_after(), &answer.body), answer.body);
            if matches!(
                body["reason"].as_str(),
                Some("ExpiredProviderToken" | "InvalidProviderToken")
            ) && let Some(token) = &self.token
            {
                token.invalidate();
            }
            Err(error)
        })
    }
}

#[cfg(test)]
mod tests;
