//! The settings of an SMTP relay: `[dispatch.email]` (provider `smtp`), or `kind = "smtp"`
//! under `[dispatch.providers.<name>]` for another relay.

use std::sync::Arc;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::SmtpProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits, Unsubscribe};

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

impl ProviderKind for EmailConfig {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Email]
    }

    /// A relay's limits come from its session pool.
    fn limits(&self) -> ProviderLimits {
        ProviderLimits {
            concurrency: usize::try_from(self.smtp.pool_size).unwrap_or(1),
            timeout_ms: self.smtp.timeout_ms,
            rate_per_second: self.rate_per_second,
            ..ProviderLimits::default()
        }
    }

    fn build(&self, _name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(SmtpProvider::new(self)?))
    }
}
