//! The delivery ledger: one entry per delivery, keyed by (notification id, channel, target),
//! claimed before the provider is called and completed after. A redelivered or replayed
//! record whose delivery is already complete is acknowledged without calling the provider.
//!
//! The one window where a duplicate is possible: a process that claimed a delivery and died
//! before completing it. Its claim is taken over once it is older than the claim timeout
//! and counted as `unknown` (the provider may or may not have sent it).

pub mod scylla;
pub mod sqlite;

use std::time::Duration;

use herald_runtime::scylla::ScyllaSetupError;
use herald_runtime::sqlite::SqliteError;

use crate::config::{LedgerBackend, LedgerConfig};
use scylla::ScyllaLedger;
use sqlite::SqliteLedger;

/// Which delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeliveryKey {
    pub notification_id: String,
    pub channel: String,
    pub target: String,
}

/// How a delivery ended, for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    Sent,
    Failed,
}

impl Completion {
    pub fn as_str(self) -> &'static str {
        match self {
            Completion::Sent => "sent",
            Completion::Failed => "failed",
        }
    }

    fn parse(state: &str) -> Option<Self> {
        match state {
            "sent" => Some(Completion::Sent),
            "failed" => Some(Completion::Failed),
            _ => None,
        }
    }
}

/// The answer to a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This caller may call the provider. `took_over` says a stale claim of another process
    /// was taken over: whether that process reached the provider is unknown.
    Granted { took_over: bool },
    /// Already done; do not call the provider again.
    Done(Completion),
    /// Another process claimed it `claimed_at` (ms) and may be sending it right now.
    Busy { claimed_at: i64 },
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("delivery ledger unavailable: {0}")]
    Unavailable(String),
    #[error("delivery ledger holds an unreadable entry: {0}")]
    Corrupt(String),
}

/// Ledger operations; `now` is ms since the epoch (passed in so tests control time).
pub trait DeliveryLedger: Send + Sync + 'static {
    fn claim(
        &self,
        key: &DeliveryKey,
        now: i64,
        claim_timeout: Duration,
    ) -> impl Future<Output = Result<Claim, LedgerError>> + Send;

    /// Records the final outcome of a claimed delivery.
    fn complete(
        &self,
        key: &DeliveryKey,
        completion: Completion,
        now: i64,
    ) -> impl Future<Output = Result<(), LedgerError>> + Send;

    /// Gives a claim back (a transient failure): the retry claims it again.
    fn release(&self, key: &DeliveryKey) -> impl Future<Output = Result<(), LedgerError>> + Send;
}

fn claim_is_stale(claimed_at: i64, now: i64, claim_timeout: Duration) -> bool {
    let timeout = i64::try_from(claim_timeout.as_millis()).unwrap_or(i64::MAX);
    now.saturating_sub(claimed_at) >= timeout
}

/// The ledger the configuration names: the one place that asks which backend.
#[derive(Debug)]
pub enum AnyLedger {
    Sqlite(SqliteLedger),
    /// Boxed: its prepared statements make it large.
    Scylla(Box<ScyllaLedger>),
}

#[derive(Debug, thiserror::Error)]
pub enum LedgerOpenError {
    #[error("cannot open the delivery ledger at {path}")]
    Sqlite { path: String, source: SqliteError },
    #[error("cannot open the delivery ledger in ScyllaDB")]
    Scylla(#[from] ScyllaSetupError),
}

impl AnyLedger {
    /// The ledger of `[dispatch.ledger]`: its SQLite file, or its ScyllaDB keyspace (whose
    /// table `herald migrate` creates).
    pub async fn open(config: &LedgerConfig) -> Result<Self, LedgerOpenError> {
        Ok(match config.backend {
            LedgerBackend::Sqlite => {
                let path = config.path.display().to_string();
                let ledger = SqliteLedger::open(&config.path)
                    .map_err(|source| LedgerOpenError::Sqlite { path, source })?;
                Self::Sqlite(ledger)
            }
            LedgerBackend::Scylla => {
                let ledger = ScyllaLedger::connect(&config.scylla, config.retention()).await?;
                Self::Scylla(Box::new(ledger))
            }
        })
    }

    /// Deletes entries last touched before `older_than` (ms): SQLite keeps them until then,
    /// ScyllaDB rows carry a TTL and expire alone.
    pub async fn expire(&self, older_than: i64) -> Result<usize, LedgerError> {
        match self {
            Self::Sqlite(ledger) => ledger.expire(older_than).await,
            Self::Scylla(_) => Ok(0),
        }
    }
}

impl DeliveryLedger for AnyLedger {
    async fn claim(
        &self,
        key: &DeliveryKey,
        now: i64,
        claim_timeout: Duration,
    ) -> Result<Claim, LedgerError> {
        match self {
            Self::Sqlite(ledger) => ledger.claim(key, now, claim_timeout).await,
            Self::Scylla(ledger) => ledger.claim(key, now, claim_timeout).await,
        }
    }

    async fn complete(
        &self,
        key: &DeliveryKey,
        completion: Completion,
        now: i64,
    ) -> Result<(), LedgerError> {
        match self {
            Self::Sqlite(ledger) => ledger.complete(key, completion, now).await,
            Self::Scylla(ledger) => ledger.complete(key, completion, now).await,
        }
    }

    async fn release(&self, key: &DeliveryKey) -> Result<(), LedgerError> {
        match self {
            Self::Sqlite(ledger) => ledger.release(key).await,
            Self::Scylla(ledger) => ledger.release(key).await,
        }
    }
}
