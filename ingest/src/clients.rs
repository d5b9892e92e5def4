//! API clients and their keys. A key is shown once, when it is created; only its SHA-256 is
//! stored. Keys are 256 random bits, so a fast hash is safe here (no dictionary to guess
//! from), and lookups stay cheap enough to run on every request.

use std::path::PathBuf;

use herald_runtime::sqlite::{SqliteError, SqlitePool};
use rand::RngCore;
use rusqlite::{OptionalExtension, params};
use sha2::{Digest, Sha256};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS api_clients (
    client_id  TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    key_hash   TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
";

/// Keys start with this, so they are recognisable in secret scanners.
const KEY_PREFIX: &str = "hrld_";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiClient {
    pub client_id: String,
    pub name: String,
    pub created_at: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone)]
pub struct ApiClients {
    pool: SqlitePool,
}

fn hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

impl ApiClients {
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, SqliteError> {
        Ok(Self { pool: SqlitePool::open(path, SCHEMA)? })
    }

    /// Creates a client; returns it and its key, which is not stored and cannot be shown again.
    pub fn add(&self, name: &str) -> Result<(ApiClient, String), SqliteError> {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let key = format!("{KEY_PREFIX}{}", hex::encode(secret));
        let client = ApiClient {
            client_id: uuid::Uuid::now_v7().to_string(),
            name: name.to_owned(),
            created_at: herald_schemas::now_millis(),
            revoked: false,
        };
        let key_hash = hash(&key);
        self.pool.run_blocking(|c| {
            c.execute(
                "INSERT INTO api_clients (client_id, name, key_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![client.client_id, client.name, key_hash, client.created_at],
            )
        })?;
        Ok((client, key))
    }

    pub fn list(&self) -> Result<Vec<ApiClient>, SqliteError> {
        self.pool.run_blocking(|c| {
            let mut statement = c.prepare(
                "SELECT client_id, name, created_at, revoked_at IS NOT NULL FROM api_clients ORDER BY created_at",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(ApiClient {
                    client_id: row.get(0)?,
                    name: row.get(1)?,
                    created_at: row.get(2)?,
                    revoked: row.get(3)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Revokes a client's key; returns false when no such client exists.
    pub fn revoke(&self, client_id: &str) -> Result<bool, SqliteError> {
        let now = herald_schemas::now_millis();
        self.pool
            .run_blocking(|c| {
                c.execute(
                    "UPDATE api_clients SET revoked_at = ?2 WHERE client_id = ?1 AND revoked_at IS NULL",
                    params![client_id, now],
                )
            })
            .map(|changed| changed > 0)
    }

    /// The client a presented key belongs to, if the key is known and not revoked.
    pub async fn authenticate(&self, key: &str) -> Result<Option<String>, SqliteError> {
        if !key.starts_with(KEY_PREFIX) {
            return Ok(None);
        }
        let key_hash = hash(key);
        self.pool
            .run(move |c| {
                c.prepare_cached(
                    "SELECT client_id FROM api_clients WHERE key_hash = ?1 AND revoked_at IS NULL",
                )?
                .query_row([key_hash], |row| row.get(0))
                .optional()
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_authenticate_until_revoked_and_are_stored_hashed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ingest.db");
        let clients = ApiClients::open(&path).unwrap();
        let (client, key) = clients.add("billing").unwrap();
        assert_eq!(clients.authenticate(&key).await.unwrap(), Some(client.client_id.clone()));
        assert_eq!(clients.authenticate("hrld_wrong").await.unwrap(), None);

        let raw = std::fs::read(&path).unwrap();
        let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
        let needle = key.as_bytes();
        let contains = |hay: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
        assert!(!contains(&raw) && !contains(&wal), "the key itself is never stored");

        assert!(clients.revoke(&client.client_id).unwrap());
        assert_eq!(clients.authenticate(&key).await.unwrap(), None);
        assert!(clients.list().unwrap()[0].revoked);
    }
}
