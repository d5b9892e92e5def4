//! `herald migrate`: the keyspaces and tables of every store configured to live on a CQL
//! node, and `--check`, which tells whether they are there (what the roles' pods wait for).

use anyhow::Context;
use herald_dispatchers::config::LedgerBackend;
use herald_dispatchers::ledger::scylla::ScyllaLedger;
use herald_enricher::{DirectoryBackend, ScyllaDirectory};
use herald_ingest::StoreBackend;
use herald_ingest::store::ScyllaIngestStore;
use herald_runtime::scylla::{ScyllaConfig, apply_cql, missing_tables};

use crate::config::HeraldConfig;

/// A store on a CQL node: what it is called, where it is configured, its settings and its
/// tables.
struct CqlStore<'a> {
    what: &'static str,
    section: &'static str,
    scylla: &'a ScyllaConfig,
    cql: &'static str,
}

impl CqlStore<'_> {
    fn context(&self) -> String {
        format!("the {} ({})", self.what, self.section)
    }
}

fn cql_stores(config: &HeraldConfig) -> Vec<CqlStore<'_>> {
    let mut stores = Vec::new();
    if config.enricher.directory_backend == DirectoryBackend::Scylla {
        stores.push(CqlStore {
            what: "directory",
            section: "enricher.scylla",
            scylla: &config.enricher.scylla,
            cql: ScyllaDirectory::CQL,
        });
    }
    if config.dispatch.ledger.backend == LedgerBackend::Scylla {
        stores.push(CqlStore {
            what: "delivery ledger",
            section: "dispatch.ledger.scylla",
            scylla: &config.dispatch.ledger.scylla,
            cql: ScyllaLedger::CQL,
        });
    }
    if config.ingest.store_backend == StoreBackend::Scylla {
        stores.push(CqlStore {
            what: "ingest store",
            section: "ingest.scylla",
            scylla: &config.ingest.scylla,
            cql: ScyllaIngestStore::CQL,
        });
    }
    stores
}

/// Creates the keyspace and tables of every store configured to live on a CQL node; what
/// it made sure of, one line per store. Safe to run again: every statement is `IF NOT
/// EXISTS`.
pub async fn migrate(config: &HeraldConfig) -> anyhow::Result<Vec<String>> {
    let mut done = Vec::new();
    for store in cql_stores(config) {
        let session = store.scylla.connect_creating_keyspace().await.context(store.context())?;
        let keyspace = store.scylla.keyspace().context(store.context())?;
        apply_cql(&session, store.cql, keyspace)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", store.context()))?;
        done.push(format!("{} tables in keyspace {keyspace}", store.what));
    }
    Ok(done)
}

/// The tables `migrate` would create, as `keyspace.table` after the store's name; empty
/// once it ran. Creates nothing.
pub async fn missing(config: &HeraldConfig) -> anyhow::Result<Vec<String>> {
    let mut missing = Vec::new();
    for store in cql_stores(config) {
        let session = store.scylla.connect().await.context(store.context())?;
        let keyspace = store.scylla.keyspace().context(store.context())?;
        let tables = missing_tables(&session, store.cql, keyspace)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", store.context()))?;
        missing.extend(tables.into_iter().map(|table| format!("{}: {table}", store.what)));
    }
    Ok(missing)
}
