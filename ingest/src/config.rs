//! `[ingest]`: the send API's listener, its stores, request limits, idempotency window and
//! the providers' delivery-report callbacks.

use std::net::SocketAddr;
use std::path::PathBuf;

use herald_runtime::scylla::ScyllaConfig;
use serde::{Deserialize, Serialize};

use crate::store::StoreBackend;

/// `[ingest]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    pub listen: SocketAddr,
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Recipients in one `POST /v1/notifications`.
    pub max_recipients: usize,
    /// Recipients in one `POST /v1/notifications/bulk`, and its body limit.
    pub bulk_max_recipients: usize,
    pub bulk_max_body_bytes: usize,
    /// Where ingest keeps API clients, idempotency keys, statuses and webhooks: `sqlite`
    /// (`store_path`; one machine) or `scylla` (`[ingest.scylla]`; shared by every instance).
    pub store_backend: StoreBackend,
    /// The SQLite file, with `store_backend = "sqlite"`.
    pub store_path: PathBuf,
    /// The ScyllaDB keyspace, with `store_backend = "scylla"`; `herald migrate` creates its
    /// tables.
    pub scylla: ScyllaConfig,
    /// How long an `Idempotency-Key` is remembered.
    pub idempotency_window_hours: u64,
    /// How far ahead `send_at` may schedule a notification.
    pub max_schedule_days: u32,
    /// Delivery reports providers post back.
    pub callbacks: CallbacksConfig,
    /// How long a caller's webhook endpoint may take to answer before the post counts as
    /// failed (and is retried through the tiers of `dispatch.retry`).
    pub webhook_timeout_ms: u64,
    /// How long a send waits for the broker to acknowledge what it produced. Past it, the
    /// caller gets 503 with `Retry-After` (a sign-in code cannot wait out a broker outage);
    /// what was queued may still reach the broker, so a retry with the same
    /// `Idempotency-Key` is the same notification.
    pub send_wait_ms: u64,
}

/// `[ingest.callbacks]`: providers' delivery reports, verified by each provider's scheme.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallbacksConfig {
    pub twilio: Option<TwilioCallbacks>,
    pub sendgrid: Option<SendgridCallbacks>,
}

/// SendGrid's signed Event Webhook to `POST /v1/callbacks/sendgrid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridCallbacks {
    /// The verification key SendGrid shows for the signed webhook (a public key).
    pub verification_key: String,
}

/// Twilio status callbacks to `POST /v1/callbacks/twilio`, signed with the account's auth
/// token (`X-Twilio-Signature`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioCallbacks {
    /// The URL Twilio calls, exactly as the Twilio provider's `status_callback` names it
    /// (the signature covers it, and a proxy in front of ingest changes what ingest sees).
    pub url: String,
    pub auth_token: herald_runtime::SecretSource,
}

impl IngestConfig {
    pub fn max_schedule_ms(&self) -> i64 {
        i64::from(self.max_schedule_days) * 86_400_000
    }

    pub fn idempotency_window_ms(&self) -> i64 {
        i64::try_from(self.idempotency_window_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX)
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 256 * 1024,
            max_recipients: 100,
            bulk_max_recipients: 10_000,
            bulk_max_body_bytes: 16 * 1024 * 1024,
            store_backend: StoreBackend::Sqlite,
            store_path: PathBuf::from("data/ingest/ingest.db"),
            scylla: ScyllaConfig::default(),
            idempotency_window_hours: 24,
            max_schedule_days: 30,
            callbacks: CallbacksConfig::default(),
            webhook_timeout_ms: 5_000,
            send_wait_ms: 5_000,
        }
    }
}
