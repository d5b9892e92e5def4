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
