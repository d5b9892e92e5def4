//! Where ingest keeps what it owns: API clients, idempotency keys, statuses and webhooks.
//! One SQLite file serves one machine (the default, and `herald dev`); ScyllaDB lets several
//! ingest instances share them, so a key added, a request retried or a status asked for on
//! one instance is seen by all. One trait per store says what a backend keeps for it
//! ([`ClientRecords`], [`IdempotencyRecords`], [`StatusRecords`], [`WebhookRecords`]); each
//! backend implements all four beside its SQL or CQL (`sqlite.rs`, `scylla.rs`), the store
//! types above them (`crate::clients`, `crate::idempotency`, `crate::status`,
//! `crate::webhooks`, opened together by `crate::stores`) hold a [`AnyIngestStore`] and never ask
//! which, and one contract suite (`ingest/tests/store_contract.rs`) holds both backends to
//! the same behaviour. This module knows nothing of the types above it.

pub mod scylla;
pub mod sqlite;

use std::sync::Arc;

use herald_runtime::scylla::LwtError;
use herald_runtime::sqlite::SqliteError;
use herald_schemas::DeliveryEvent;
use serde::{Deserialize, Serialize};

pub use scylla::ScyllaIngestStore;
pub use sqlite::SqliteIngestStore;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreBackend {
    /// One file (`ingest.store_path`): one ingest instance, or several on one machine.
    #[default]
    Sqlite,
    /// Shared by every ingest instance of a cluster (`ingest.scylla`).
    Scylla,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Sqlite(#[from] SqliteError),
    #[error("ingest store (ScyllaDB) unavailable: {0}")]
    Unavailable(String),
    #[error("ingest store (ScyllaDB) holds an unreadable row: {0}")]
    Corrupt(String),
}

impl From<LwtError> for StoreError {
    fn from(e: LwtError) -> Self {
        match e {
            LwtError::Execute(reason) => StoreError::Unavailable(reason),
            LwtError::Unreadable(reason) => StoreError::Corrupt(reason),
        }
    }
}

/// How long a first request may take before a retry may take its key over.
pub const PENDING_TIMEOUT_MS: i64 = 30_000;

/// What to do with a request carrying an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begin {
    /// Go ahead, under this notification id.
    Proceed { notification_id: String },
    /// Answer what the first request was answered.
    Replay { status: u16, response: String },
    /// The key was used with another body.
    Mismatch,
    /// The first request with this key is still under way.
    InProgress,
}

/// An API client as a backend keeps it.
#[derive(Debug, ::scylla::DeserializeRow)]
#[scylla(crate = ::scylla)]
pub(crate) struct ClientRow {
    pub client_id: String,
    pub name: Option<String>,
    pub created_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub policy: Option<String>,
}

/// One stored event of a notification.
#[derive(Debug, ::scylla::DeserializeRow)]
#[scylla(crate = ::scylla)]
pub(crate) struct EventRow {
    pub kind: String,
    pub occurred_at: i64,
    pub channel: Option<String>,
    pub target: Option<String>,
    pub user_id: Option<String>,
    pub provider: Option<String>,
    pub reason: Option<String>,
    pub attempt: Option<i32>,
    pub detail: Option<String>,
}

/// A client's status webhook as a backend keeps it.
#[derive(Debug, ::scylla::DeserializeRow)]
#[scylla(crate = ::scylla)]
pub(crate) struct WebhookRow {
    pub client_id: String,
    pub url: Option<String>,
    pub events: Option<String>,
    pub secret: Option<String>,
}

/// API clients and their keys' hashes.
pub(crate) trait ClientRecords {
    /// Stores a new client and its key's hash.
    async fn add_client(
        &self,
        client_id: &str,
        name: &str,
        key_hash: &str,
        created_at: i64,
        policy: &str,
    ) -> Result<(), StoreError>;
    async fn clients(&self) -> Result<Vec<ClientRow>, StoreError>;
    /// Marks the client revoked; false if there is no such client or it already was.
    async fn revoke(&self, client_id: &str, now: i64) -> Result<bool, StoreError>;
    /// The client holding the key with this hash, whether revoked or not.
    async fn client_of_key(&self, key_hash: &str) -> Result<Option<ClientRow>, StoreError>;
}

/// Idempotency keys, claimed once per (client, key) within the backend's window.
pub(crate) trait IdempotencyRecords {
    async fn begin(
        &self,
        client_key: (&str, &str),
        body_hash: &str,
        proposed: &str,
        now: i64,
    ) -> Result<Begin, StoreError>;
    async fn finish(
        &self,
        client_key: (&str, &str),
        status: u16,
        response: &str,
    ) -> Result<(), StoreError>;
    /// Frees a key whose request produced nothing.
    async fn abandon(&self, client_key: (&str, &str)) -> Result<(), StoreError>;
    /// Lets the next request with an unanswered key take it over at once, under its
    /// notification id: its request may have produced part of what it had to.
    async fn release(&self, client_key: (&str, &str), now: i64) -> Result<(), StoreError>;
}

/// Notifications' events, by notification and by user.
pub(crate) trait StatusRecords {
    /// Stores events; one stored before (same event id) is not stored twice.
    async fn record(&self, events: Vec<DeliveryEvent>) -> Result<(), StoreError>;
    /// The events of a notification, oldest first.
    async fn events(&self, notification_id: &str) -> Result<Vec<EventRow>, StoreError>;
    /// The API client that sent a notification: the `client_id` of its `accepted` event.
    async fn client_of(&self, notification_id: &str) -> Result<Option<String>, StoreError>;
    /// Up to `fetch` (notification id, accepted at) of a user from a client, accepted before
    /// `before`, newest first.
    async fn user_page(
        &self,
        user_client: (&str, &str),
        before: i64,
        fetch: i32,
    ) -> Result<Vec<(String, i64)>, StoreError>;
    /// Erases what the events say of a user: every event naming them, and the events naming
    /// no one of notifications that named only them (an address a delivery report gave).
    /// How many events it erased.
    async fn erase_user(&self, user_id: &str) -> Result<u64, StoreError>;
}

/// Clients' status webhooks.
pub(crate) trait WebhookRecords {
    /// Sets (or replaces) a client's webhook: its URL, event kinds (JSON) and secret.
    async fn set_webhook(
        &self,
        client_id: &str,
        url_events_secret: (&str, &str, &str),
        now: i64,
    ) -> Result<(), StoreError>;
    async fn webhook(&self, client_id: &str) -> Result<Option<WebhookRow>, StoreError>;
    /// Removes a client's webhook; false if it had none.
    async fn remove_webhook(&self, client_id: &str) -> Result<bool, StoreError>;
    /// When the oldest webhook now set was set.
    async fn first_webhook_at(&self) -> Result<Option<i64>, StoreError>;
}

/// The backend a store type holds, chosen at start-up (`crate::stores`): the one place that
/// asks which.
#[derive(Debug, Clone)]
pub(crate) enum AnyIngestStore {
    Sqlite(SqliteIngestStore),
    Scylla(Arc<ScyllaIngestStore>),
}

/// `backend.method(args)` on whichever backend it is.
macro_rules! on_backend {
    ($backend:expr, $method:ident ( $($arg:expr),* )) => {
        match $backend {
            AnyIngestStore::Sqlite(store) => store.$method($($arg),*).await,
            AnyIngestStore::Scylla(store) => store.$method($($arg),*).await,
        }
    };
}

impl ClientRecords for AnyIngestStore {
    async fn add_client(
        &self,
        client_id: &str,
        name: &str,
        key_hash: &str,
        created_at: i64,
        policy: &str,
    ) -> Result<(), StoreError> {
        on_backend!(self, add_client(client_id, name, key_hash, created_at, policy))
    }
    async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        on_backend!(self, clients())
    }
    async fn revoke(&self, client_id: &str, now: i64) -> Result<bool, StoreError> {
        on_backend!(self, revoke(client_id, now))
    }
    async fn client_of_key(&self, key_hash: &str) -> Result<Option<ClientRow>, StoreError> {
        on_backend!(self, client_of_key(key_hash))
    }
}

impl IdempotencyRecords for AnyIngestStore {
    async fn begin(
        &self,
        client_key: (&str, &str),
        body_hash: &str,
        proposed: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        on_backend!(self, begin(client_key, body_hash, proposed, now))
    }
    async fn finish(
        &self,
        client_key: (&str, &str),
        status: u16,
        response: &str,
    ) -> Result<(), StoreError> {
        on_backend!(self, finish(client_key, status, response))
    }
    async fn abandon(&self, client_key: (&str, &str)) -> Result<(), StoreError> {
        on_backend!(self, abandon(client_key))
    }

    async fn release(&self, client_key: (&str, &str), now: i64) -> Result<(), StoreError> {
        on_backend!(self, release(client_key, now))
    }
}

impl StatusRecords for AnyIngestStore {
    async fn record(&self, events: Vec<DeliveryEvent>) -> Result<(), StoreError> {
        on_backend!(self, record(events))
    }
    async fn events(&self, notification_id: &str) -> Result<Vec<EventRow>, StoreError> {
        on_backend!(self, events(notification_id))
    }
    async fn client_of(&self, notification_id: &str) -> Result<Option<String>, StoreError> {
        on_backend!(self, client_of(notification_id))
    }
    async fn user_page(
        &self,
        user_client: (&str, &str),
        before: i64,
        fetch: i32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        on_backend!(self, user_page(user_client, before, fetch))
    }
    async fn erase_user(&self, user_id: &str) -> Result<u64, StoreError> {
        on_backend!(self, erase_user(user_id))
    }
}

impl WebhookRecords for AnyIngestStore {
    async fn set_webhook(
        &self,
        client_id: &str,
        url_events_secret: (&str, &str, &str),
        now: i64,
    ) -> Result<(), StoreError> {
        on_backend!(self, set_webhook(client_id, url_events_secret, now))
    }
    async fn webhook(&self, client_id: &str) -> Result<Option<WebhookRow>, StoreError> {
        on_backend!(self, webhook(client_id))
    }
    async fn remove_webhook(&self, client_id: &str) -> Result<bool, StoreError> {
        on_backend!(self, remove_webhook(client_id))
    }
    async fn first_webhook_at(&self) -> Result<Option<i64>, StoreError> {
        on_backend!(self, first_webhook_at())
    }
}
