//! Which API clients want status webhooks: their URL, the event kinds they asked for, and the
//! secret their deliveries are signed with. Kept in ingest's store, next to the clients.

use std::path::PathBuf;
use std::sync::Arc;

use herald_runtime::sqlite::SqliteError;
use rand::RngCore as _;

use crate::store::{
    AnyIngestStore, ScyllaIngestStore, SqliteIngestStore, StoreError, WebhookRecords as _,
    WebhookRow,
};

/// Webhook signing secrets start with this, so they are recognisable in a secret store.
pub const SECRET_PREFIX: &str = "whsec_";

/// The event kinds a webhook may ask for.
pub const EVENT_KINDS: [&str; 11] = [
    "accepted",
    "scheduled",
    "skipped",
    "routed",
    "sent",
    "delivered",
    "failed",
    "retrying",
    "dead_lettered",
    "opened",
    "clicked",
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub client_id: String,
    pub url: String,
    /// Event kinds delivered; all when empty.
    pub events: Vec<String>,
    /// The signing secret: HMAC needs it as it is, so it is stored as it is (unlike API keys).
    pub secret: String,
}

impl Webhook {
    pub fn wants(&self, kind: &str) -> bool {
        self.events.is_empty() || self.events.iter().any(|e| e == kind)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WebhookSetupError {
    #[error("webhook URL {0:?} is not an http(s) URL")]
    Url(String),
    #[error("unknown event kind {0:?} (one of: {kinds})", kinds = EVENT_KINDS.join(", "))]
    Kind(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone)]
pub struct WebhookRegistry {
    backend: AnyIngestStore,
}

impl From<WebhookRow> for Webhook {
    fn from(row: WebhookRow) -> Self {
        Self {
            client_id: row.client_id,
            url: row.url.unwrap_or_default(),
            events: row.events.and_then(|e| serde_json::from_str(&e).ok()).unwrap_or_default(),
            secret: row.secret.unwrap_or_default(),
        }
    }
}

impl WebhookRegistry {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SqliteError> {
        Ok(Self { backend: AnyIngestStore::Sqlite(SqliteIngestStore::open(path, 0)?) })
    }

    pub fn on_scylla(store: Arc<ScyllaIngestStore>) -> Self {
        Self { backend: AnyIngestStore::Scylla(store) }
    }

    /// Registers (or replaces) `client_id`'s webhook; returns it with its new secret, shown
    /// to the operator once.
    pub async fn set(
        &self,
        client_id: &str,
        url: &str,
        events: &[String],
    ) -> Result<Webhook, WebhookSetupError> {
        let parsed = url.starts_with("https://") || url.starts_with("http://");
        if !parsed || url.contains(char::is_whitespace) {
            return Err(WebhookSetupError::Url(url.to_owned()));
        }
        if let Some(unknown) = events.iter().find(|e| !EVENT_KINDS.contains(&e.as_str())) {
            return Err(WebhookSetupError::Kind(unknown.clone()));
        }
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let webhook = Webhook {
            client_id: client_id.to_owned(),
            url: url.to_owned(),
            events: events.to_vec(),
            secret: format!("{SECRET_PREFIX}{}", hex::encode(bytes)),
        };
        let kinds = serde_json::to_string(&webhook.events).unwrap_or_else(|_| "[]".into());
        let now = herald_schemas::now_millis();
        let fields = (webhook.url.as_str(), kinds.as_str(), webhook.secret.as_str());
        self.backend.set_webhook(client_id, fields, now).await?;
        Ok(webhook)
    }

    /// Removes `client_id`'s webhook; false if it had none.
    pub async fn remove(&self, client_id: &str) -> Result<bool, StoreError> {
        self.backend.remove_webhook(client_id).await
    }

    /// When the oldest webhook now registered was set (ms since the epoch); `None` while no
    /// client has one.
    pub async fn first_registered_at(&self) -> Result<Option<i64>, StoreError> {
        self.backend.first_webhook_at().await
    }

    pub async fn of(&self, client_id: &str) -> Result<Option<Webhook>, StoreError> {
        Ok(self.backend.webhook(client_id).await?.map(Webhook::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_registration_time_is_the_oldest_webhook_still_set() {
        let dir = tempfile::tempdir().unwrap();
        let registry = WebhookRegistry::open(dir.path().join("ingest.db")).unwrap();
        assert_eq!(registry.first_registered_at().await.unwrap(), None);
        let before = herald_schemas::now_millis();
        registry.set("c-1", "https://a.example.com/h", &[]).await.unwrap();
        let first = registry.first_registered_at().await.unwrap().unwrap();
        assert!(first >= before && first <= herald_schemas::now_millis());
        registry.set("c-2", "https://b.example.com/h", &[]).await.unwrap();
        assert_eq!(registry.first_registered_at().await.unwrap(), Some(first));
        registry.remove("c-1").await.unwrap();
        registry.remove("c-2").await.unwrap();
        assert_eq!(registry.first_registered_at().await.unwrap(), None);
    }
}
