//! Which API clients want status webhooks: their URL, the event kinds they asked for, and the
//! secret their deliveries are signed with. Kept in ingest's store, next to the clients.

use std::path::PathBuf;

use herald_runtime::sqlite::{SqliteError, SqlitePool};
use rand::RngCore as _;
use rusqlite::{OptionalExtension as _, params};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS client_webhooks (
    client_id  TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

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
    Store(#[from] SqliteError),
}

#[derive(Debug, Clone)]
pub struct WebhookRegistry {
    pool: SqlitePool,
}

impl WebhookRegistry {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SqliteError> {
        Ok(Self { pool: SqlitePool::open(path, SCHEMA)? })
    }

    /// Registers (or replaces) `client_id`'s webhook; returns it with its new secret, shown
    /// to the operator once.
    pub fn set(
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
        self.pool.run_blocking(|c| {
            c.execute(
                "INSERT INTO client_webhooks (client_id, url, events, secret, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (client_id) DO UPDATE SET url = ?2, events = ?3, secret = ?4, created_at = ?5",
                params![webhook.client_id, webhook.url, kinds, webhook.secret, now],
            )
        })?;
        Ok(webhook)
    }

    /// Removes `client_id`'s webhook; false if it had none.
    pub fn remove(&self, client_id: &str) -> Result<bool, SqliteError> {
        self.pool
            .run_blocking(|c| {
                c.execute("DELETE FROM client_webhooks WHERE client_id = ?1", [client_id])
            })
            .map(|n| n > 0)
    }

    /// When the oldest webhook now registered was set (ms since the epoch); `None` while no
    /// client has one.
    pub async fn first_registered_at(&self) -> Result<Option<i64>, SqliteError> {
        self.pool
            .run(|c| {
                c.query_row("SELECT MIN(created_at) FROM client_webhooks", [], |row| row.get(0))
            })
            .await
    }

    pub async fn of(&self, client_id: &str) -> Result<Option<Webhook>, SqliteError> {
        let id = client_id.to_owned();
        self.pool
            .run(move |c| {
                c.prepare_cached(
                    "SELECT client_id, url, events, secret FROM client_webhooks WHERE client_id = ?1",
                )?
                .query_row([id], |row| {
                    let events: String = row.get(2)?;
                    Ok(Webhook {
                        client_id: row.get(0)?,
                        url: row.get(1)?,
                        events: serde_json::from_str(&events).unwrap_or_default(),
                        secret: row.get(3)?,
                    })
                })
                .optional()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_webhook_is_set_replaced_with_a_new_secret_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let registry = WebhookRegistry::open(dir.path().join("ingest.db")).unwrap();
        let first = registry.set("c-1", "https://a.example.com/h", &["sent".into()]).unwrap();
        assert!(first.secret.starts_with(SECRET_PREFIX));
        assert_eq!(registry.of("c-1").await.unwrap(), Some(first.clone()));
        assert!(first.wants("sent") && !first.wants("failed"));
        let second = registry.set("c-1", "https://b.example.com/h", &[]).unwrap();
        assert_ne!(second.secret, first.secret, "a new secret each time");
        assert!(registry.of("c-1").await.unwrap().unwrap().wants("failed"), "all kinds");
        assert!(matches!(registry.set("c-1", "ftp://x", &[]), Err(WebhookSetupError::Url(_))));
        assert!(matches!(
            registry.set("c-1", "https://x.example.com", &["sentt".into()]),
            Err(WebhookSetupError::Kind(_))
        ));
        assert!(registry.remove("c-1").unwrap());
        assert_eq!(registry.of("c-1").await.unwrap(), None);
    }

    #[tokio::test]
    async fn the_first_registration_time_is_the_oldest_webhook_still_set() {
        let dir = tempfile::tempdir().unwrap();
        let registry = WebhookRegistry::open(dir.path().join("ingest.db")).unwrap();
        assert_eq!(registry.first_registered_at().await.unwrap(), None);
        let before = herald_schemas::now_millis();
        registry.set("c-1", "https://a.example.com/h", &[]).unwrap();
        let first = registry.first_registered_at().await.unwrap().unwrap();
        assert!(first >= before && first <= herald_schemas::now_millis());
        registry.set("c-2", "https://b.example.com/h", &[]).unwrap();
        assert_eq!(registry.first_registered_at().await.unwrap(), Some(first));
        registry.remove("c-1").unwrap();
        registry.remove("c-2").unwrap();
        assert_eq!(registry.first_registered_at().await.unwrap(), None);
    }
}
