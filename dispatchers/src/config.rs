use std::path::PathBuf;
use std::time::Duration;

use herald_runtime::SecretSource;
use herald_runtime::scylla::ScyllaConfig;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// `[dispatch]` section.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    pub email: EmailConfig,
    pub retry: RetryConfig,
    pub ledger: LedgerConfig,
}

/// `[dispatch.retry]`: one retry tier per delay.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    pub delays_ms: Vec<u64>,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self { delays_ms: vec![10_000, 60_000, 600_000, 3_600_000] }
    }
}

impl RetryConfig {
    pub fn policy(&self) -> RetryPolicy {
        RetryPolicy::new(self.delays_ms.iter().copied().map(Duration::from_millis).collect())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LedgerBackend {
    /// One file per machine: right when one machine runs a channel's dispatchers.
    Sqlite,
    /// Shared by every dispatcher process of a cluster.
    Scylla,
}

/// `[dispatch.ledger]`: the delivery ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerConfig {
    pub backend: LedgerBackend,
    pub path: PathBuf,
    pub scylla: ScyllaConfig,
    /// A claim older than this is taken to belong to a crashed process and is taken over.
    /// Must exceed the slowest provider call.
    pub claim_timeout_ms: u64,
    /// How long a delivery is remembered: the window in which replays are not resent.
    pub retention_hours: u64,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            backend: LedgerBackend::Sqlite,
            path: PathBuf::from("data/dispatch/ledger.db"),
            scylla: ScyllaConfig::default(),
            claim_timeout_ms: 60_000,
            retention_hours: 7 * 24,
        }
    }
}

impl LedgerConfig {
    pub fn claim_timeout(&self) -> Duration {
        Duration::from_millis(self.claim_timeout_ms)
    }

    pub fn retention(&self) -> Duration {
        Duration::from_secs(self.retention_hours.saturating_mul(3600))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    pub smtp: SmtpConfig,
    /// Used when a message names no sender.
    pub default_from: String,
    /// Domain part of generated Message-IDs.
    pub message_id_domain: String,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp: SmtpConfig::default(),
            default_from: "Herald <noreply@herald.localhost>".into(),
            message_id_domain: "herald.localhost".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP: local relays and test servers only.
    None,
    /// Upgrade with STARTTLS (submission, port 587).
    Starttls,
    /// TLS from the first byte (submissions, port 465).
    Implicit,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    /// Pooled connections kept open to the relay.
    pub pool_size: u32,
    pub timeout_ms: u64,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 2525,
            tls: SmtpTls::None,
            username: None,
            password: None,
            pool_size: 8,
            timeout_ms: 10_000,
        }
    }
}
