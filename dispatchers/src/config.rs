use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use herald_schemas::Channel;

use herald_runtime::SecretSource;
use herald_runtime::scylla::ScyllaConfig;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

/// `[dispatch]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// The built-in SMTP relay, provider `smtp`.
    pub email: EmailConfig,
    pub retry: RetryConfig,
    pub ledger: LedgerConfig,
    /// Further provider accounts by name: `[dispatch.providers.fcm-main] kind = "fcm" ...`.
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Per channel, per route: the providers serving it, best first. Every channel needs a
    /// `default` route; the enricher chooses a message's route (e.g. by region).
    pub routes: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            email: EmailConfig::default(),
            retry: RetryConfig::default(),
            ledger: LedgerConfig::default(),
            providers: BTreeMap::new(),
            routes: crate::providers::registry::default_routes(),
        }
    }
}

impl DispatchConfig {
    /// The routes of `channel` (none configured: none).
    pub fn routes_of(&self, channel: Channel) -> BTreeMap<String, Vec<String>> {
        self.routes.get(channel.as_str()).cloned().unwrap_or_default()
    }

    /// The settings of the provider called `name`; `smtp` is `[dispatch.email]` unless a
    /// provider of that name is configured.
    pub fn provider(&self, name: &str) -> Option<ProviderConfig> {
        match self.providers.get(name) {
            Some(config) => Some(config.clone()),
            None if name == "smtp" => Some(ProviderConfig::Smtp(self.email.clone())),
            None => None,
        }
    }
}

/// What every provider account is allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderLimits {
    /// Sends in progress at once.
    pub concurrency: usize,
    /// Sends per second (unset: no limit beyond what the provider answers with 429s).
    pub rate_per_second: Option<f64>,
    pub timeout_ms: u64,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self { concurrency: 64, rate_per_second: None, timeout_ms: 10_000 }
    }
}

/// One provider account; `kind` says which API it speaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderConfig {
    /// Another SMTP relay, configured like `[dispatch.email]`.
    Smtp(EmailConfig),
    /// Firebase Cloud Messaging HTTP v1 (android).
    Fcm(FcmSettings),
    /// Records instead of sending.
    Sandbox(SandboxSettings),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmSettings {
    /// The service-account key (JSON) of the Firebase project.
    pub credentials: SecretSource,
    /// Default `https://fcm.googleapis.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    pub channel: Channel,
    /// JSON lines file; default `data/dispatch/sandbox-<name>.jsonl`.
    #[serde(default)]
    pub record_to: Option<PathBuf>,
    #[serde(default)]
    pub limits: ProviderLimits,
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
    /// Messages per second through this relay (unset: no limit).
    pub rate_per_second: Option<f64>,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp: SmtpConfig::default(),
            default_from: "Herald <noreply@herald.localhost>".into(),
            message_id_domain: "herald.localhost".into(),
            rate_per_second: None,
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
