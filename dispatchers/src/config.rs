use herald_runtime::SecretSource;
use serde::{Deserialize, Serialize};

/// `[dispatch]` section.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    pub email: EmailConfig,
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
