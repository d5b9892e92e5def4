//! The four stores of ingest (API clients, idempotency keys, statuses, webhooks), opened
//! together on the backend the configuration names.

use std::path::Path;
use std::sync::Arc;

use herald_runtime::scylla::ScyllaSetupError;
use herald_runtime::sqlite::SqliteError;

use crate::clients::ApiClients;
use crate::config::IngestConfig;
use crate::idempotency::IdempotencyStore;
use crate::status::StatusStore;
use crate::store::{ScyllaIngestStore, StoreBackend};
use crate::webhooks::WebhookRegistry;

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
                Ok(Self::on_scylla(&Arc::new(store)))
            }
        }
    }

    /// Each store opens the file with a pool of its own, so the status sink's writes never
    /// queue the API's key lookups behind them for a connection.
    pub fn open_sqlite(path: &Path, idempotency_window_ms: i64) -> Result<Self, SqliteError> {
        Ok(Self {
            clients: ApiClients::open(path)?,
            status: StatusStore::open(path)?,
            idempotency: IdempotencyStore::open(path, idempotency_window_ms)?,
            webhooks: WebhookRegistry::open(path)?,
        })
    }

    /// The stores on `store` (which keeps idempotency keys for the window it was connected
    /// with).
    pub fn on_scylla(store: &Arc<ScyllaIngestStore>) -> Self {
        Self {
            clients: ApiClients::on_scylla(Arc::clone(store)),
            status: StatusStore::on_scylla(Arc::clone(store)),
            idempotency: IdempotencyStore::on_scylla(Arc::clone(store)),
            webhooks: WebhookRegistry::on_scylla(Arc::clone(store)),
        }
    }
}
