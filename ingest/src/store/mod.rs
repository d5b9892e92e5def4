//! Where ingest keeps what it owns: API clients, idempotency keys, statuses and webhooks.
//! One SQLite file serves one machine (the default, and `herald dev`); ScyllaDB lets several
//! ingest instances share them, so a key added, a request retried or a status asked for on
//! one instance is seen by all. Each store type hides which one behind the same methods,
//! and one contract suite (`ingest/tests/store_contract.rs`) holds both to them.

pub mod scylla;

use std::path::Path;
use std::sync::Arc;

use herald_runtime::scylla::{LwtError, ScyllaSetupError};
use herald_runtime::sqlite::SqliteError;
use serde::{Deserialize, Serialize};

use crate::clients::ApiClients;
use crate::config::IngestConfig;
use crate::idempotency::IdempotencyStore;
use crate::status::StatusStore;
use crate::webhooks::WebhookRegistry;
pub use scylla::ScyllaIngestStore;

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

#[derive(Debug, thiserror::Error)]
pub enum StoreOpenError {
    #[error("cannot open the ingest store at {path}")]
    Sqlite { path: String, source: SqliteError },
    #[error("cannot open the ingest store in ScyllaDB")]
    Scylla(#[from] ScyllaSetupError),
}

/// The four stores, on one backend.
#[derive(Debug, Clone)]
pub struct IngestStores {
    pub clients: ApiClients,
    pub status: StatusStore,
    pub idempotency: IdempotencyStore,
    pub webhooks: WebhookRegistry,
}

impl IngestStores {
    /// The stores `config` names: its SQLite file, or its ScyllaDB keyspace (whose tables
    /// `herald migrate` creates).
    pub async fn open(config: &IngestConfig) -> Result<Self, StoreOpenError> {
        let window_ms = config.idempotency_window_ms();
        match config.store_backend {
            StoreBackend::Sqlite => {
                Self::open_sqlite(&config.store_path, window_ms).map_err(|source| {
                    StoreOpenError::Sqlite { path: config.store_path.display().to_string(), source }
                })
            }
            StoreBackend::Scylla => {
                let store = ScyllaIngestStore::connect(&config.scylla, window_ms).await?;
                Ok(Self::on_scylla(&Arc::new(store), window_ms))
            }
        }
    }

    pub fn open_sqlite(path: &Path, idempotency_window_ms: i64) -> Result<Self, SqliteError> {
        Ok(Self {
            clients: ApiClients::open(path)?,
            status: StatusStore::open(path)?,
            idempotency: IdempotencyStore::open(path, idempotency_window_ms)?,
            webhooks: WebhookRegistry::open(path)?,
        })
    }

    pub fn on_scylla(store: &Arc<ScyllaIngestStore>, idempotency_window_ms: i64) -> Self {
        Self {
            clients: ApiClients::on_scylla(Arc::clone(store)),
            status: StatusStore::on_scylla(Arc::clone(store)),
            idempotency: IdempotencyStore::on_scylla(Arc::clone(store), idempotency_window_ms),
            webhooks: WebhookRegistry::on_scylla(Arc::clone(store)),
        }
    }
}
