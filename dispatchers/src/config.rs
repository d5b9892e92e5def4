//! `[dispatch]`: the built-in SMTP relay, provider accounts, routes, retries and the delivery
//! ledger. Each provider kind's settings live in its folder under `providers/`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use herald_schemas::Channel;

use herald_runtime::scylla::ScyllaConfig;
use serde::{Deserialize, Serialize};

pub use crate::providers::smtp::{EmailConfig, SmtpConfig, SmtpTls};
pub use crate::providers::{ProviderConfig, ProviderLimits, SmsOptions, Unsubscribe};
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
    /// Per channel, per app id: providers for that app's devices, overriding the route
    /// (apps of different Firebase projects or Apple teams).
    pub app_routes: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            email: EmailConfig::default(),
            retry: RetryConfig::default(),
            ledger: LedgerConfig::default(),
            providers: BTreeMap::new(),
            routes: default_routes(),
            app_routes: BTreeMap::new(),
        }
    }
}

impl DispatchConfig {
    /// The routes of `channel` (none configured: none).
    pub fn routes_of(&self, channel: Channel) -> BTreeMap<String, Vec<String>> {
        self.routes.get(channel.as_str()).cloned().unwrap_or_default()
    }

    /// The per-app routes of `channel`.
    pub fn app_routes_of(&self, channel: Channel) -> BTreeMap<String, Vec<String>> {
        self.app_routes.get(channel.as_str()).cloned().unwrap_or_default()
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

/// Default routes: email through the SMTP relay of `[dispatch.email]`.
pub fn default_routes() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    BTreeMap::from([(
        "email".to_owned(),
        BTreeMap::from([("default".to_owned(), vec!["smtp".to_owned()])]),
    )])
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
        RetryPolicy::new(self.delays())
    }

    /// The wait before each retry tier (status webhooks use the same tiers).
    pub fn delays(&self) -> Vec<Duration> {
        self.delays_ms.iter().copied().map(Duration::from_millis).collect()
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
