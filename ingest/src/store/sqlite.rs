//! Ingest's stores in one SQLite file (`ingest.store_path`): the default, and `herald dev`'s.
//! Ingest processes on one machine share the file; every write is one transaction of the
//! pool's single writer, so an idempotency key is claimed once.

use std::path::PathBuf;

use herald_runtime::sqlite::{SqliteError, SqlitePool};
use herald_schemas::DeliveryEvent;
use rusqlite::{OptionalExtension as _, params};

use super::{
    Begin, ClientRecords, ClientRow, EventRow, IdempotencyRecords, PENDING_TIMEOUT_MS,
    StatusRecords, StoreError, WebhookRecords, WebhookRow,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_clients (
    client_id  TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
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
CREATE TABLE IF NOT EXISTS notification_events (
    event_id        TEXT PRIMARY KEY,
    notification_id TEXT NOT NULL,
    occurred_at     INTEGER NOT NULL,
    kind            TEXT NOT NULL,
    channel         TEXT,
    target          TEXT,
    user_id         TEXT,
    provider        TEXT,
    reason          TEXT,
    attempt         INTEGER NOT NULL,
    detail          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS notification_events_by_notification
    ON notification_events (notification_id, occurred_at);
CREATE INDEX IF NOT EXISTS notification_events_by_user
    ON notification_events (user_id, kind, occurred_at);
CREATE TABLE IF NOT EXISTS client_webhooks (
    client_id  TEXT PRIMARY KEY,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
";

/// Columns added after the first release, for stores created before them.
const MIGRATIONS: [&str; 1] =
    ["ALTER TABLE api_clients ADD COLUMN policy TEXT NOT NULL DEFAULT '{}'"];

#[derive(Debug, Clone)]
pub struct SqliteIngestStore {
    pool: SqlitePool,
    idempotency_window_ms: i64,
}

impl SqliteIngestStore {
    /// Opens (creating if needed) the store at `path`; idempotency keys live for
    /// `idempotency_window_ms`.
    pub fn open(path: impl Into<PathBuf>, idempotency_window_ms: i64) -> Result<Self, SqliteError> {
        let pool = SqlitePool::open_with_added_columns(path, SCHEMA, &MIGRATIONS)?;
        Ok(Self { pool, idempotency_window_ms })
    }
}

/// An idempotency key's row.
struct Claimed {
    body_hash: String,
    notification_id: String,
    answer: Option<(u16, String)>,
    created_at: i64,
}

impl ClientRecords for SqliteIngestStore {
    async fn add_client(
        &self,
        client_id: &str,
        name: &str,
        key_hash: &str,
        created_at: i64,
        policy: &str,
    ) -> Result<(), StoreError> {
        let row = (client_id.to_owned(), name.to_owned(), key_hash.to_owned(), policy.to_owned());
        self.pool
            .write(move |c| {
                let (id, name, key_hash, policy) = &row;
                c.execute(
                    "INSERT INTO api_clients (client_id, name, key_hash, created_at, policy) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![id, name, key_hash, created_at, policy],
                )
            })
            .await?;
        Ok(())
    }

    async fn clients(&self) -> Result<Vec<ClientRow>, StoreError> {
        Ok(self
            .pool
            .run(|c| {
                let mut statement = c.prepare(
                    "SELECT client_id, name, created_at, revoked_at, policy FROM api_clients",
                )?;
                let rows = statement.query_map([], client_row)?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?)
    }

    async fn revoke(&self, client_id: &str, now: i64) -> Result<bool, StoreError> {
        let id = client_id.to_owned();
        let changed = self
            .pool
            .write(move |c| {
                c.execute(
                    "UPDATE api_clients SET revoked_at = ?2 WHERE client_id = ?1 AND revoked_at IS NULL",
                    params![id, now],
                )
            })
            .await?;
        Ok(changed > 0)
    }

    async fn client_of_key(&self, key_hash: &str) -> Result<Option<ClientRow>, StoreError> {
        let key_hash = key_hash.to_owned();
        Ok(self
            .pool
            .run(move |c| {
                c.prepare_cached(
                    "SELECT client_id, name, created_at, revoked_at, policy FROM api_clients WHERE key_hash = ?1",
                )?
                .query_row([key_hash], client_row)
                .optional()
            })
            .await?)
    }
}

fn client_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok(ClientRow {
        client_id: row.get(0)?,
        name: row.get(1)?,
        created_at: row.get(2)?,
        revoked_at: row.get(3)?,
        policy: row.get(4)?,
    })
}

impl IdempotencyRecords for SqliteIngestStore {
    async fn begin(
        &self,
        (client_id, key): (&str, &str),
        body_hash: &str,
        proposed: &str,
        now: i64,
    ) -> Result<Begin, StoreError> {
        let (client_id, key, body_hash, proposed) =
            (client_id.to_owned(), key.to_owned(), body_hash.to_owned(), proposed.to_owned());
        let window_ms = self.idempotency_window_ms;
        let decision = self
            .pool
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

    async fn finish(
        &self,
        (client_id, key): (&str, &str),
        status: u16,
        response: &str,
    ) -> Result<(), StoreError> {
        let (client_id, key, response) =
            (client_id.to_owned(), key.to_owned(), response.to_owned());
        self.pool
            .write(move |c| {
                c.execute(
                    "UPDATE idempotency_keys SET status = ?3, response = ?4 WHERE client_id = ?1 AND key = ?2",
                    params![client_id, key, status, response],
                )
            })
            .await?;
        Ok(())
    }

    async fn abandon(&self, (client_id, key): (&str, &str)) -> Result<(), StoreError> {
        let (client_id, key) = (client_id.to_owned(), key.to_owned());
        self.pool
            .write(move |c| {
                c.execute(
                    "DELETE FROM idempotency_keys WHERE client_id = ?1 AND key = ?2 AND status IS NULL",
                    params![client_id, key],
                )
            })
            .await?;
        Ok(())
    }

    async fn release(&self, (client_id, key): (&str, &str), now: i64) -> Result<(), StoreError> {
        let (client_id, key) = (client_id.to_owned(), key.to_owned());
        // Claimed as long ago as a stale claim: the next request takes it over.
        let stale = now - PENDING_TIMEOUT_MS;
        self.pool
            .write(move |c| {
                c.execute(
                    "UPDATE idempotency_keys SET created_at = ?3 WHERE client_id = ?1 AND key = ?2 AND status IS NULL",
                    params![client_id, key, stale],
                )
            })
            .await?;
        Ok(())
    }
}

impl StatusRecords for SqliteIngestStore {
    async fn record(&self, events: Vec<DeliveryEvent>) -> Result<(), StoreError> {
        self.pool
            .write(move |c| {
                let mut insert = c.prepare_cached(
                    "INSERT OR IGNORE INTO notification_events (event_id, notification_id, occurred_at, kind,
                        channel, target, user_id, provider, reason, attempt, detail)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?;
                for e in &events {
                    let detail = serde_json::to_string(&e.detail).unwrap_or_else(|_| "{}".into());
                    insert.execute(params![
                        e.event_id,
                        e.notification_id,
                        e.occurred_at,
                        e.kind.as_str(),
                        e.channel,
                        e.target,
                        e.user_id,
                        e.provider,
                        e.reason,
                        e.attempt,
                        detail
                    ])?;
                }
                Ok(())
            })
            .await?;
        Ok(())
    }

    async fn events(&self, notification_id: &str) -> Result<Vec<EventRow>, StoreError> {
        let id = notification_id.to_owned();
        Ok(self
            .pool
            .run(move |c| {
                let mut select = c.prepare_cached(
                    "SELECT kind, occurred_at, channel, target, user_id, provider, reason, attempt, detail
                     FROM notification_events WHERE notification_id = ?1 ORDER BY occurred_at, event_id",
                )?;
                let rows = select.query_map([id], |row| {
                    Ok(EventRow {
                        kind: row.get(0)?,
                        occurred_at: row.get(1)?,
                        channel: row.get(2)?,
                        target: row.get(3)?,
                        user_id: row.get(4)?,
                        provider: row.get(5)?,
                        reason: row.get(6)?,
                        attempt: row.get(7)?,
                        detail: row.get(8)?,
                    })
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?)
    }

    async fn client_of(&self, notification_id: &str) -> Result<Option<String>, StoreError> {
        let id = notification_id.to_owned();
        Ok(self
            .pool
            .run(move |c| {
                c.prepare_cached(
                    "SELECT json_extract(detail, '$.client_id') FROM notification_events
                     WHERE notification_id = ?1 AND kind = 'accepted' LIMIT 1",
                )?
                .query_row([id], |row| row.get::<_, Option<String>>(0))
                .optional()
                .map(Option::flatten)
            })
            .await?)
    }

    async fn user_page(
        &self,
        (user_id, client_id): (&str, &str),
        before: i64,
        fetch: i32,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let (user, client) = (user_id.to_owned(), client_id.to_owned());
        Ok(self
            .pool
            .run(move |c| {
                let mut select = c.prepare_cached(
                    "SELECT notification_id, MIN(occurred_at) AS at FROM notification_events
                     WHERE user_id = ?1 AND kind = 'accepted' AND occurred_at < ?2
                       AND json_extract(detail, '$.client_id') = ?3
                     GROUP BY notification_id ORDER BY at DESC, notification_id LIMIT ?4",
                )?;
                let rows = select.query_map(params![user, before, client, fetch], |row| {
                    Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            })
            .await?)
    }

    async fn erase_user(&self, user_id: &str) -> Result<u64, StoreError> {
        let user_id = user_id.to_owned();
        Ok(self
            .pool
            // One savepoint: the user's events go together.
            .write(move |c| {
                let only_theirs = Self::only_theirs(c, &user_id)?;
                let mut erased =
                    c.execute("DELETE FROM notification_events WHERE user_id = ?1", [&user_id])?;
                for id in &only_theirs {
                    erased += c.execute(
                        "DELETE FROM notification_events WHERE notification_id = ?1 AND user_id IS NULL",
                        [id],
                    )?;
                }
                Ok(erased as u64)
            })
            .await?)
    }
}

impl SqliteIngestStore {
    /// The notifications that name `user_id` and no other user.
    fn only_theirs(c: &rusqlite::Connection, user_id: &str) -> rusqlite::Result<Vec<String>> {
        let mut select = c.prepare_cached(
            "SELECT DISTINCT notification_id FROM notification_events e WHERE user_id = ?1
             AND NOT EXISTS (SELECT 1 FROM notification_events o
                 WHERE o.notification_id = e.notification_id
                   AND o.user_id IS NOT NULL AND o.user_id <> ?1)",
        )?;
        let rows = select.query_map([user_id], |row| row.get(0))?;
        rows.collect()
    }
}

impl WebhookRecords for SqliteIngestStore {
    async fn set_webhook(
        &self,
        client_id: &str,
        (url, events, secret): (&str, &str, &str),
        now: i64,
    ) -> Result<(), StoreError> {
        let row = (client_id.to_owned(), url.to_owned(), events.to_owned(), secret.to_owned());
        self.pool
            .write(move |c| {
                let (client_id, url, events, secret) = &row;
                c.execute(
                    "INSERT INTO client_webhooks (client_id, url, events, secret, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (client_id) DO UPDATE SET url = ?2, events = ?3, secret = ?4, created_at = ?5",
                    params![client_id, url, events, secret, now],
                )
            })
            .await?;
        Ok(())
    }

    async fn webhook(&self, client_id: &str) -> Result<Option<WebhookRow>, StoreError> {
        let id = client_id.to_owned();
        Ok(self
            .pool
            .run(move |c| {
                c.prepare_cached(
                    "SELECT client_id, url, events, secret FROM client_webhooks WHERE client_id = ?1",
                )?
                .query_row([id], |row| {
                    Ok(WebhookRow {
                        client_id: row.get(0)?,
                        url: row.get(1)?,
                        events: row.get(2)?,
                        secret: row.get(3)?,
                    })
                })
                .optional()
            })
            .await?)
    }

    async fn remove_webhook(&self, client_id: &str) -> Result<bool, StoreError> {
        let id = client_id.to_owned();
        let removed = self
            .pool
            .write(move |c| c.execute("DELETE FROM client_webhooks WHERE client_id = ?1", [id]))
            .await?;
        Ok(removed > 0)
    }

    async fn first_webhook_at(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .pool
            .run(|c| {
                c.query_row("SELECT MIN(created_at) FROM client_webhooks", [], |row| row.get(0))
            })
            .await?)
    }
}
