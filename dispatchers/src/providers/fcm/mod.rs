//! Firebase Cloud Messaging, HTTP v1 API: OAuth2 access tokens from a service-account key
//! (a signed JWT exchanged at the key's `token_uri`, cached until shortly before it
//! expires), `POST /v1/projects/{project}/messages:send`, and FCM's error codes mapped to
//! outcomes (UNREGISTERED and SENDER_ID_MISMATCH: the token is dead).

use std::time::Duration;

use herald_schemas::ChannelMessage;
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::providers::http::{self, transport_failure};
use crate::providers::jwt::{KeyError, Signer};
use crate::providers::{DeliveryError, Provider, SendFuture, Sent};

mod config;

pub use config::FcmSettings;

const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";
/// Tokens are renewed this long before they expire.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum FcmSetupError {
    #[error(transparent)]
    Secret(#[from] herald_runtime::config::SecretError),
    #[error("the FCM service-account key is not valid JSON of a service account: {0}")]
    Key(String),
    #[error("the FCM service-account private key: {0}")]
    PrivateKey(#[from] KeyError),
    #[error(transparent)]
    Client(#[from] http::ClientError),
}

/// The fields of a Google service-account key file that FCM needs.
#[derive(Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct AccessTokens {
    http: reqwest::Client,
    signer: Signer,
    client_email: String,
    token_uri: String,
    cached: Mutex<Option<(String, Instant)>>,
}

impl AccessTokens {
    /// A valid access token, fetched once for all concurrent callers when it is missing or
    /// about to expire.
    async fn get(&self) -> Result<String, DeliveryError> {
        let mut cached = self.cached.lock().await;
        if let Some((token, expires)) = cached.as_ref()
            && Instant::now() + RENEW_BEFORE < *expires
        {
            return Ok(token.clone());
        }
        let (token, lifetime) = self.fetch().await?;
        *cached = Some((token.clone(), Instant::now() + lifetime));
        Ok(token)
    }

    async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self) -> Result<(String, Duration), DeliveryError> {
        let now = herald_schemas::now_millis() / 1000;
        let claims = json!({"iss": self.client_email, "scope": SCOPE, "aud": self.token_uri, "iat": now, "exp": now + 3600});
        let assertion =
            self.signer.sign(&json!({}), &claims).map_err(|e| DeliveryError::Transient {
                reason: format!("cannot sign the FCM token request: {e}"),
                retry_after: None,
            })?;
        let form = [
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", assertion.as_str()),
        ];
        let response =
            self.http.post(&self.token_uri).form(&form).send().await.map_err(transport_failure)?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // A refused token request is our credentials' fault, not the message's: retry (after
        // the operator fixed it) instead of failing notifications.
        let refused = |why: String| DeliveryError::Transient {
            reason: format!("FCM access token refused ({status}): {why}"),
            retry_after: None,
        };
        if !status.is_success() {
            return Err(refused(
                body["error_description"]
                    .as_str()
                    .or(body["error"].as_str())
                    .unwrap_or("no reason")
                    .to_owned(),
            ));
        }
        let token = body["access_token"]
            .as_str()
            .ok_or_else(|| refused("no access_token in the answer".into()))?;
        let lifetime = Duration::from_secs(body["expires_in"].as_u64().unwrap_or(3600));
        Ok((token.to_owned(), lifetime))
    }
}

#[derive(Debug)]
pub struct FcmProvider {
    http: reqwest::Client,
    send_url: String,
    tokens: AccessTokens,
}

impl FcmProvider {
    pub fn new(name: &str, settings: &FcmSettings) -> Result<Self, FcmSetupError> {
        let key = settings.credentials.read()?;
        let account: ServiceAccount =
            serde_json::from_str(&key).map_err(|e| FcmSetupError::Key(e.to_string()))?;
        let http = http::client(name, Duration::from_millis(settings.limits.timeout_ms), false)?;
        let base = settings
            .base_url
            .as_deref()
            .unwrap_or("https://fcm.googleapis.com")
            .trim_end_matches('/');
        let send_url = format!("{base}/v1/projects/{}/messages:send", account.project_id);
        let tokens = AccessTokens {
            http: http.clone(),
            signer: Signer::rs256(&account.private_key)?,
            client_email: account.client_email,
            token_uri: account.token_uri,
            cached: Mutex::new(None),
        };
        Ok(Self { http, send_url, tokens })
    }

    fn body(message: &ChannelMessage) -> Result<Value, DeliveryError> {
        let push = super::push_content(message)?;
        let mut data = push.data.clone();
        data.insert("notification_id".into(), message.notification_id.clone());
        let urgent = super::is_urgent(message);
        let mut notification = json!({"body": push.body});
        if let Some(title) = &push.title {
            notification["title"] = json!(title);
        }
        let mut android = json!({
            "priority": if urgent { "HIGH" } else { "NORMAL" },
            "collapse_key": super::collapse_id(message),
        });
        if message.expires_at.is_some() {
            android["ttl"] = json!(format!("{}s", super::time_to_live_secs(message, 0)));
        }
        Ok(json!({"message": {
            "token": message.target,
            "notification": notification,
            "data": data,
            "android": android,
        }}))
    }
}

/// FCM's `errorCode` (from `details`), or the gRPC status name.
fn error_code(body: &Value) -> String {
    let details = body["error"]["details"].as_array();
    let fcm = details.and_then(|d| d.iter().find_map(|x| x["errorCode"].as_str()));
    fcm.or(body["error"]["status"].as_str()).unwrap_or("UNKNOWN").to_owned()
}

pub(crate) fn classify(status: StatusCode, retry: Option<Duration>, body: &Value) -> DeliveryError {
    let code = error_code(body);
    let message = body["error"]["message"].as_str().unwrap_or_default();
    let reason = format!("FCM {} {code}: {message}", status.as_u16());
    match (status.as_u16(), code.as_str()) {
        (_, "UNREGISTERED" | "SENDER_ID_MISMATCH") => DeliveryError::DeadTarget { reason },
        (400, "INVALID_ARGUMENT") if message.contains("registration token") => {
            DeliveryError::DeadTarget { reason }
        }
        (429, _) | (500..=599, _) | (_, "QUOTA_EXCEEDED" | "UNAVAILABLE" | "INTERNAL") => {
            DeliveryError::Transient { reason, retry_after: retry }
        }
        // Our token was rejected: renewed on the next attempt.
        (401, _) => DeliveryError::Transient { reason, retry_after: None },
        _ => DeliveryError::Permanent { reason },
    }
}

impl Provider for FcmProvider {
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a> {
        Box::pin(async move {
            let body = Self::body(message)?;
            let token = self.tokens.get().await?;
            let answer =
                http::exchange(self.http.post(&self.send_url).bearer_auth(token).json(&body))
                    .await?;
            if answer.status.is_success() {
                let name = answer.body["name"].as_str().map(str::to_owned);
                return Ok(Sent { provider_message_id: name });
            }
            if answer.status == StatusCode::UNAUTHORIZED {
                self.tokens.invalidate().await;
            }
            Err(classify(answer.status, answer.retry_after(), &answer.body))
        })
    }
}

#[cfg(test)]
mod tests;
