//! The embedded ledger: SQLite, one file owned by the dispatchers of one machine.

use std::path::PathBuf;
use std::time::Duration;

use herald_runtime::sqlite::{SqliteError, SqlitePool};
use rusqlite::{OptionalExtension, params};

use super::{Claim, Completion, DeliveryKey, DeliveryLedger, LedgerError, claim_is_stale};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS delivery_ledger (
    notification_id TEXT NOT NULL,
    channel         TEXT NOT NULL,
    target          TEXT NOT NULL,
    state           TEXT NOT NULL,   -- claimed | sent | failed
    claimed_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (notification_id, channel, target)
);
CREATE INDEX IF NOT EXISTS delivery_ledger_updated ON delivery_ledger (updated_at);
";

#[derive(Debug, Clone)]
pub struct SqliteLedger {
    pool: SqlitePool,
}

#[allow(clippy::needless_pass_by_value)] // used as `map_err(unavailable)`
fn unavailable(e: SqliteError) -> LedgerError {
    LedgerError::Unavailable(e.to_string())
}

impl SqliteLedger {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SqliteError> {
        Ok(Self { pool: SqlitePool::open(path, SCHEMA)? })
    }

    /// Deletes entries last touched before `older_than` (ms); returns how many.
    pub async fn expire(&self, older_than: i64) -> Result<usize, LedgerError> {
        self.pool
            .run(move |c| {
                c.execute("DELETE FROM delivery_ledger WHERE updated_at < ?1", [older_than])
            })
            .await
            .map_err(unavailable)
    }
}

impl DeliveryLedger for SqliteLedger {
    async fn claim(
        &self,
        key: &DeliveryKey,
        now: i64,
        claim_timeout: Duration,
    ) -> Result<Claim, LedgerError> {
        let key = key.clone();
        let found = self
            .pool
            // One transaction (the write's savepoint): the claim is decided atomically.
            .write(move |c| {
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO delivery_ledger (notification_id, channel, target, state, claimed_at, updated_at)
                         VALUES (?1, ?2, ?3, 'claimed', ?4, ?4) ON CONFLICT DO NOTHING",
                    )?
                    .execute(params![key.notification_id, key.channel, key.target, now])?;
                if inserted == 1 {
                    return Ok(None);
                }
                let existing: Option<(String, i64)> = c
                    .prepare_cached(
                        "SELECT state, claimed_at FROM delivery_ledger
                         WHERE notification_id = ?1 AND channel = ?2 AND target = ?3",
                    )?
                    .query_row(params![key.notification_id, key.channel, key.target], |row| {
                        Ok((row.get(0)?, row.get(1)?))
                    })
                    .optional()?;
                let mut took_over = false;
                if let Some((state, claimed_at)) = &existing
                    && state == "claimed"
                    && claim_is_stale(*claimed_at, now, claim_timeout)
                {
                    c.prepare_cached(
                        "UPDATE delivery_ledger SET claimed_at = ?4, updated_at = ?4
                         WHERE notification_id = ?1 AND channel = ?2 AND target = ?3",
                    )?
                    .execute(params![key.notification_id, key.channel, key.target, now])?;
                    took_over = true;
                }
                Ok(Some((existing, took_over)))
            })
            .await
            .map_err(unavailable)?;
        match found {
            None => Ok(Claim::Granted { took_over: false }),
            Some((_, true)) => Ok(Claim::Granted { took_over: true }),
            Some((Some((state, claimed_at)), false)) => match Completion::parse(&state) {
                Some(done) => Ok(Claim::Done(done)),
                None if state == "claimed" => Ok(Claim::Busy { claimed_at }),
                None => Err(LedgerError::Corrupt(format!("unknown state {state:?}"))),
            },
            // The row vanished between insert and select (expired concurrently): claim again.
            Some((None, false)) => {
                Err(LedgerError::Unavailable("entry changed while claiming; retry".into()))
            }
        }
    }

    async fn complete(
        &self,
        key: &DeliveryKey,
        completion: Completion,
        now: i64,
    ) -> Result<(), LedgerError> {
        let key = key.clone();
        self.pool
            .write(move |c| {
                c.prepare_cached(
                    "INSERT INTO delivery_ledger (notification_id, channel, target, state, claimed_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                     ON CONFLICT (notification_id, channel, target) DO UPDATE SET state = ?4, updated_at = ?5",
                )?
                .execute(params![key.notification_id, key.channel, key.target, completion.as_str(), now])
            })
            .await
            .map(drop)
            .map_err(unavailable)
    }

    async fn release(&self, key: &DeliveryKey) -> Result<(), LedgerError> {
        let key = key.clone();
        self.pool
            .write(move |c| {
                c.prepare_cached(
                    "DELETE FROM delivery_ledger
                     WHERE notification_id = ?1 AND channel = ?2 AND target = ?3 AND state = 'claimed'",
                )?
                .execute(params![key.notification_id, key.channel, key.target])
            })
            .await
            .map(drop)
            .map_err(unavailable)
    }
}
