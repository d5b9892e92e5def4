use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use herald_schemas::Channel;

use herald_runtime::SecretSource;
use herald_runtime::scylla::ScyllaConfig;
use serde::{Deserialize, Serialize};

use crate::retry::RetryPolicy;

mod providers;

pub use providers::*;

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
            routes: crate::providers::registry::default_routes(),
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
    pub unsubscribe: Unsubscribe,
}

/// `List-Unsubscribe` (RFC 2369) with one-click unsubscribe (RFC 8058) on the categories a
/// user may leave, as mailbox providers require of bulk senders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Unsubscribe {
    /// HTTPS URL; `{user_id}`, `{notification_id}`, `{category}` and `{address}` are
    /// replaced (URL-encoded). It must accept a POST for one-click unsubscribes.
    pub url: Option<String>,
    /// `mailto:` address for clients without one-click support.
    pub mailto: Option<String>,
    pub categories: Vec<String>,
}

impl Default for Unsubscribe {
    fn default() -> Self {
        Self { url: None, mailto: None, categories: vec!["marketing".into()] }
    }
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp: SmtpConfig::default(),
            default_from: "Herald <noreply@herald.localhost>".into(),
            message_id_domain: "herald.localhost".into(),
            rate_per_second: None,
            unsubscribe: Unsubscribe::default(),
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
    /// SMTP sessions to the relay: how many messages go out at once, and how many stay open
    /// while idle (a session idle for over a minute is closed, not reused).
    pub pool_size: u32,
    /// How long one message may take, from taking a session (or connecting) to the relay's
    /// answer; past it the session is closed and the message retried later.
    pub timeout_ms: u64,
    /// PEM file of CA certificates trusted for the relay's TLS certificate besides the public
    /// roots: a private relay signed by an internal CA.
    pub ca_file: Option<String>,
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
            ca_file: None,
        }
    }
}
