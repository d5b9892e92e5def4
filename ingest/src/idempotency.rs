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

use herald_runtime::sqlite::{SqliteError, SqlitePool};
use rusqlite::{OptionalExtension, params};

use crate::store::{ScyllaIngestStore, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS idempotency_keys (
    client_id       TEXT NOT NULL,
    key             TEXT NOT NULL,
    body_hash       TEXT NOT NULL,
    notification_id TEXT NOT NULL,
    status          INTEGER,          -- NULL while the first request is under way
    response        TEXT,
    created_at      INTEGER NOT NULL,
    PRIMARY KEY (client_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);
";

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

/// A key's row.
struct Claimed {
    body_hash: String,
    notification_id: String,
    answer: Option<(u16, String)>,
    created_at: i64,
}

#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    backend: Backend,
    window_ms: i64,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqlitePool),
    Scylla(Arc<ScyllaIngestStore>),
}

/// A key is 1 to 255 visible ASCII characters.
pub fn valid_key(key: &str) -> bool {
    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
}

impl IdempotencyStore {
    pub fn open(path: impl Into<PathBuf>, window_ms: i64) -> Result<Self, SqliteError> {
        Ok(Self { backend: Backend::Sqlite(SqlitePool::open(path, SCHEMA)?), window_ms })
    }

    /// Keys in ScyllaDB, which expires them itself after the window it was opened with.
    pub fn on_scylla(store: Arc<ScyllaIngestStore>, window_ms: i64) -> Self {
        Self { backend: Backend::Scylla(store), window_ms }
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
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Scylla(store) => {
                return store.begin((client_id, key), body_hash, notification_id, now).await;
            }
        };
        let (client_id, key, body_hash, proposed) = (
            client_id.to_owned(),
            key.to_owned(),
            body_hash.to_owned(),
            notification_id.to_owned(),
        );
        let window_ms = self.window_ms;
        let decision = pool
            // One transaction (the write's savepoint): a key is claimed once.
            .write(move |c| {
                c.execute("DELETE FROM idempotency_keys WHERE created_at < ?1", [now - window_ms])?;
                let found = c
                    .query_row(
                        "SELECT body_hash, notification_id, status, response, created_at
                         FROM idempotency_keys WHERE client_id = ?1 AND key = ?2",
                        params![client_id, key],
                        |row| {
                            let status: Option<u16> = row.get(2)?;
                            let response: Option<String> = row.get(3)?;
                            Ok(Claimed {
                                body_hash: row.get(0)?,
                                notification_id: row.get(1)?,
                                answer: status.zip(response),
                                created_at: row.get(4)?,
                            })
                        },
                    )
                    .optional()?;
                let decision = match found {
                    None => {
                        c.execute(
                            "INSERT INTO idempotency_keys (client_id, key, body_hash, notification_id, created_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            params![client_id, key, body_hash, proposed, now],
                        )?;
                        Begin::Proceed { notification_id: proposed }
                    }
                    Some(claimed) if claimed.body_hash != body_hash => Begin::Mismatch,
                    Some(Claimed { answer: Some((status, response)), .. }) => {
                        Begin::Replay { status, response }
                    }
                    Some(claimed) if now - claimed.created_at < PENDING_TIMEOUT_MS => {
                        Begin::InProgress
                    }
                    Some(Claimed { notification_id: existing, .. }) => {
                        c.execute(
                            "UPDATE idempotency_keys SET created_at = ?3 WHERE client_id = ?1 AND key = ?2",
                            params![client_id, key, now],
                        )?;
                        Begin::Proceed { notification_id: existing }
                    }
                };
                Ok(decision)
            })
            .await?;
        Ok(decision)
    }

    /// Records the answer given, for the retries to come.
    pub async fn finish(
        &self,
        client_id: &str,
        key: &str,
        status: u16,
        response: &str,
    ) -> Result<(), StoreError> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Scylla(store) => {
                return store.finish((client_id, key), status, response).await;
            }
        };
        let (client_id, key, response) =
            (client_id.to_owned(), key.to_owned(), response.to_owned());
        pool.write(move |c| {
                c.execute(
                    "UPDATE idempotency_keys SET status = ?3, response = ?4 WHERE client_id = ?1 AND key = ?2",
                    params![client_id, key, status, response],
                )
            })
            .await?;
        Ok(())
    }

    /// Gives the key up: nothing was produced, so a retry starts afresh.
    pub async fn abandon(&self, client_id: &str, key: &str) -> Result<(), StoreError> {
        let pool = match &self.backend {
            Backend::Sqlite(pool) => pool,
            Backend::Scylla(store) => return store.abandon((client_id, key)).await,
        };
        let (client_id, key) = (client_id.to_owned(), key.to_owned());
        pool.write(move |c| {
            c.execute(
                "DELETE FROM idempotency_keys WHERE client_id = ?1 AND key = ?2 AND status IS NULL",
                params![client_id, key],
            )
        })
        .await?;
        Ok(())
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
