//! `Idempotency-Key`: a request sent again with the same key by the same client within the
//! window gets the original answer and produces nothing; the same key with another body is
//! refused. The state lives in the ingest store, so it survives restarts and is shared by
//! ingest processes using the same store.
//!
//! A key is claimed with its notification id before anything is produced. If the process
//! dies between producing and recording the answer, a retry after `PENDING_TIMEOUT_MS` takes
//! the claim over and produces again under the same notification id, which the enricher and
//! the delivery ledger treat as the same notification.

use std::path::PathBuf;
use std::sync::Arc;

use herald_runtime::sqlite::SqliteError;

use crate::store::{
    AnyIngestStore, IdempotencyRecords as _, ScyllaIngestStore, SqliteIngestStore, StoreError,
};
pub use crate::store::{Begin, PENDING_TIMEOUT_MS};

#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    backend: AnyIngestStore,
}

/// A key is 1 to 255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

impl IdempotencyStore {
    pub fn open(path: impl Into<PathBuf>, window_ms: i64) -> Result<Self, SqliteError> {
        Ok(Self { backend: AnyIngestStore::Sqlite(SqliteIngestStore::open(path, window_ms)?) })
    }

    /// Keys in ScyllaDB, which expires them itself after the window it was opened with.
    pub fn on_scylla(store: Arc<ScyllaIngestStore>) -> Self {
        Self { backend: AnyIngestStore::Scylla(store) }
    }

    /// Claims `key` for a request whose body hashes to `body_hash`, proposing
    /// `notification_id` for it.
    pub async fn begin(
        &self,
        client_id: &str,
        key: &str,
        body_hash: &str,
        notification_id: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        self.backend.begin((client_id, key), body_hash, notification_id, now).await
    }

    /// Records the answer given, for the retries to come.
    pub async fn finish(
        &self,
        client_id: &str,
        key: &str,
        status: u16,
        response: &str,
    ) -> Result<(), StoreError> {
        self.backend.finish((client_id, key), status, response).await
    }

    /// Gives the key up: nothing was produced, so a retry starts afresh.
    pub async fn abandon(&self, client_id: &str, key: &str) -> Result<(), StoreError> {
        self.backend.abandon((client_id, key)).await
    }

    /// Lets a retry take the unanswered key over at once, under the same notification id:
    /// the request may have produced part of what it had to (the broker did not acknowledge
    /// in time), and what it produced again is the same notification.
    pub async fn release(&self, client_id: &str, key: &str, now: i64) -> Result<(), StoreError> {
        self.backend.release((client_id, key), now).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_short_visible_ascii() {
        assert!(valid_key("order-42/attempt") && !valid_key("") && !valid_key("with space"));
        assert!(valid_key(&"k".repeat(255)) && !valid_key(&"k".repeat(256)));
    }
}
