//! Provider accounts: one settings struct per API, all with a base URL (production by
//! default; sandbox, regional, proxy or local stand-in endpoints by configuration), secrets
//! read from env or files, and limits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::{EmailConfig, Unsubscribe};

/// What every provider account is allowed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderLimits {
    /// Sends in progress at once.
    pub concurrency: usize,
    /// Sends per second (unset: no limit beyond what the provider answers with 429s).
    pub rate_per_second: Option<f64>,
    pub timeout_ms: u64,
    /// After this many transient failures in a row the provider is skipped in favour of the
    /// route's next one, for `breaker_open_ms`; then one send probes it again.
    pub breaker_failures: u32,
    pub breaker_open_ms: u64,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        Self {
            concurrency: 64,
            rate_per_second: None,
            timeout_ms: 10_000,
            breaker_failures: 5,
            breaker_open_ms: 30_000,
        }
    }
}

/// One provider account; `kind` says which API it speaks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProviderConfig {
    /// Another SMTP relay, configured like `[dispatch.email]`.
    Smtp(EmailConfig),
    /// SendGrid v3 mail/send (email).
    Sendgrid(SendgridSettings),
    /// Firebase Cloud Messaging HTTP v1 (android).
    Fcm(FcmSettings),
    /// Apple Push Notification service, HTTP/2 (ios).
    Apns(ApnsSettings),
    /// JPush (Jiguang) push API v3: android and ios where FCM is unreachable (China).
    Jpush(JpushSettings),
    /// Pushy: MQTT-based push for android where FCM is unreachable.
    Pushy(PushySettings),
    /// Twilio Programmable Messaging (sms).
    Twilio(TwilioSettings),
    /// Vonage (Nexmo) SMS API (sms).
    Vonage(VonageSettings),
    /// Records instead of sending.
    Sandbox(SandboxSettings),
}

impl ProviderConfig {
    /// The account's limits; an SMTP relay's come from its pool and `[dispatch.email]`.
    pub fn limits(&self) -> ProviderLimits {
        match self {
            ProviderConfig::Smtp(email) => ProviderLimits {
                concurrency: usize::try_from(email.smtp.pool_size).unwrap_or(1),
                timeout_ms: email.smtp.timeout_ms,
                rate_per_second: email.rate_per_second,
                ..ProviderLimits::default()
            },
            ProviderConfig::Sendgrid(s) => s.limits.clone(),
            ProviderConfig::Fcm(s) => s.limits.clone(),
            ProviderConfig::Apns(s) => s.limits.clone(),
            ProviderConfig::Jpush(s) => s.limits.clone(),
            ProviderConfig::Pushy(s) => s.limits.clone(),
            ProviderConfig::Twilio(s) => s.limits.clone(),
            ProviderConfig::Vonage(s) => s.limits.clone(),
            ProviderConfig::Sandbox(s) => s.limits.clone(),
        }
    }
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
pub struct ApnsSettings {
    pub auth: ApnsAuth,
    /// `apns-topic` (the app's bundle id) for devices whose app is not listed in `topics`.
    pub topic: String,
    /// App id -> topic: one provider-token key serves every app of a team.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
    /// Default `https://api.push.apple.com`; development builds use
    /// `https://api.sandbox.push.apple.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// HTTP/2 connections the sends are spread over (`limits.concurrency` is shared).
    #[serde(default = "apns_connections")]
    pub connections: usize,
    #[serde(default)]
    pub limits: ProviderLimits,
}

/// HTTP/2 connections per APNs account unless configured.
pub const DEFAULT_APNS_CONNECTIONS: usize = 4;

fn apns_connections() -> usize {
    DEFAULT_APNS_CONNECTIONS
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApnsAuth {
    /// Provider tokens (ES256 JWTs) signed with a .p8 key from Apple.
    Token { team_id: String, key_id: String, key: SecretSource },
    /// A TLS client certificate and its key, PEM.
    Certificate { identity: SecretSource },
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

/// What both SMS providers need besides credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsOptions {
    /// Sender: an E.164 number or an alphanumeric sender id where the country allows one.
    pub from: String,
    /// Longer texts are refused (permanent failure) instead of billed as many parts.
    pub max_segments: u32,
}

impl Default for SmsOptions {
    fn default() -> Self {
        Self { from: String::new(), max_segments: 6 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: SecretSource,
    /// Send through a Messaging Service (its sender pool) instead of `sms.from`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Where Twilio posts delivery status callbacks.
    #[serde(default)]
    pub status_callback: Option<String>,
    #[serde(default)]
    pub sms: SmsOptions,
    /// Default `https://api.twilio.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageSettings {
    pub api_key: String,
    pub api_secret: SecretSource,
    #[serde(default)]
    pub sms: SmsOptions,
    /// Default `https://rest.nexmo.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JpushSettings {
    pub app_key: String,
    pub master_secret: SecretSource,
    /// For ios through JPush: the APNs environment JPush forwards to.
    #[serde(default = "yes")]
    pub apns_production: bool,
    /// Offline messages kept this long (JPush's default is a day, at most ten).
    #[serde(default = "a_day")]
    pub time_to_live_secs: u64,
    /// Default `https://api.jpush.cn`; apps in JPush's Beijing region may use
    /// `https://bjapi.push.jiguang.cn`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushySettings {
    /// The secret API key of the Pushy app.
    pub api_key: SecretSource,
    #[serde(default = "a_day")]
    pub time_to_live_secs: u64,
    /// Default `https://api.pushy.me`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

fn yes() -> bool {
    true
}

fn a_day() -> u64 {
    86_400
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridSettings {
    pub api_key: SecretSource,
    /// Used when a message names no sender; must be a verified sender of the account.
    pub default_from: String,
    #[serde(default)]
    pub unsubscribe: Unsubscribe,
    /// Default `https://api.sendgrid.com`; EU-pinned accounts use
    /// `https://api.eu.sendgrid.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}
