//! The providers: each kind is a folder (`apns/`, `fcm/`, ...) holding its settings
//! (`config.rs`, with how the kind builds an account), its client (`mod.rs`) and its tests,
//! the wire contract against its stand-in among them (`tests.rs`). `kinds.rs` lists the
//! kinds, one line each. Here: what a provider is to a dispatcher, and how its answers are
//! classified. Adding a kind: docs/architecture.md.

pub mod apns;
mod breaker;
pub mod email;
pub mod fcm;
pub mod http;
pub mod jpush;
pub mod jwt;
mod kinds;
pub mod limits;
pub mod pushy;
pub mod sandbox;
pub mod sendgrid;
pub mod sms;
pub mod smtp;
pub mod twilio;
pub mod vonage;
#[cfg(test)]
mod wire_contract;

pub(crate) use breaker::{Admission, Breaker};

/// Defines the providers' metrics now rather than at their first use.
pub(crate) fn define_metrics() {
    breaker::define_metrics();
    smtp::pool::define_metrics();
}
pub use email::Unsubscribe;
pub use kinds::ProviderConfig;
pub use limits::ProviderLimits;
pub use sms::SmsOptions;

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use herald_schemas::{Channel, ChannelMessage, PushContent};

/// The provider took the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    /// The provider's id for the message, where it gives one.
    pub provider_message_id: Option<String>,
}

/// Every provider failure, classified before it is routed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Will never work: invalid address, rejected payload. No retry.
    #[error("permanent failure: {reason}")]
    Permanent { reason: String },
    /// The token or address is gone for good (APNs 410, FCM UNREGISTERED): no retry, and the
    /// directory should stop targeting it.
    #[error("dead target: {reason}")]
    DeadTarget { reason: String },
    /// May work later: timeouts, connection failures, throttling, 5xx.
    #[error("transient failure: {reason}")]
    Transient { reason: String, retry_after: Option<Duration> },
    /// The message cannot be sent by this dispatcher at all (e.g. no content for the
    /// channel): the record is poison.
    #[error("undeliverable record: {reason}")]
    Invalid { reason: String },
}

impl DeliveryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, DeliveryError::Transient { .. })
    }

    pub fn outcome_label(&self) -> &'static str {
        match self {
            DeliveryError::Permanent { .. } => "permanent",
            DeliveryError::DeadTarget { .. } => "dead_target",
            DeliveryError::Transient { .. } => "transient",
            DeliveryError::Invalid { .. } => "invalid",
        }
    }
}

/// What [`Provider::send`] returns: boxed so providers of different kinds can sit in one
/// registry.
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<Sent, DeliveryError>> + Send + 'a>>;

/// One provider account (an SMTP relay, an FCM project, a Twilio account, ...).
pub trait Provider: Send + Sync + 'static {
    /// Sends one message; classifies every failure.
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a>;
}

/// Why a provider account could not be built (a secret unreadable, a key refused, a client
/// not set up): each kind's own error, shown with the account's name.
pub type BuildError = Box<dyn std::error::Error + Send + Sync>;

/// What a kind's settings say about it: implemented once per kind, in its folder's
/// `config.rs`.
pub trait ProviderKind {
    /// The channels the kind's API carries.
    fn channels(&self) -> Vec<Channel>;
    /// What the account is allowed: concurrent sends, rate, timeout, breaker.
    fn limits(&self) -> ProviderLimits;
    /// The account called `name`, ready to send: secrets read, client set up.
    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError>;
}

/// The push content of a message on a push channel; a message without it is poison.
pub(crate) fn push_content(message: &ChannelMessage) -> Result<&PushContent, DeliveryError> {
    message.push.as_ref().ok_or_else(|| DeliveryError::Invalid {
        reason: "channel message has no push content".into(),
    })
}

/// High priority (explicit, or security and transactional by default) goes out at once; the
/// rest may be batched by the provider to save the device's battery.
pub(crate) fn is_urgent(message: &ChannelMessage) -> bool {
    message.priority() == herald_schemas::Priority::High
}

/// How long the provider should keep trying to reach the device: until the message's
/// `expires_at`, else the provider's configured default.
pub(crate) fn time_to_live_secs(message: &ChannelMessage, default_secs: u64) -> u64 {
    match message.expires_at {
        Some(at) => u64::try_from((at - herald_schemas::now_millis()) / 1_000).unwrap_or(0),
        None => default_secs,
    }
}

/// The device-side collapse identifier: the caller's key, else the notification id, so a
/// resend after a crash replaces the first on the device instead of showing twice.
pub(crate) fn collapse_id(message: &ChannelMessage) -> &str {
    message.collapse_key.as_deref().unwrap_or(&message.notification_id)
}

#[cfg(test)]
pub(crate) mod tests_support {
    use std::collections::BTreeMap;

    use herald_schemas::{ChannelMessage, PushContent};

    pub(crate) fn push_message(id: &str, target: &str) -> ChannelMessage {
        ChannelMessage {
            notification_id: id.into(),
            channel: "ios".into(),
            target: target.into(),
            user_id: None,
            app_id: None,
            route: "default".into(),
            category: "transactional".into(),
            accepted_at: 0,
            from: None,
            email: None,
            sms: None,
            push: Some(PushContent {
                title: Some("t".into()),
                body: "b".into(),
                data: BTreeMap::new(),
            }),
            metadata: BTreeMap::new(),
            fallback: None,
            ..ChannelMessage::default()
        }
    }
}
