//! What a provider is to a dispatcher, and how its answers are classified.

pub mod fcm;
pub mod http;
pub mod jwt;
pub mod limits;
pub mod registry;
pub mod sandbox;
pub mod smtp;

use std::pin::Pin;
use std::time::Duration;

use herald_schemas::ChannelMessage;

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

/// One provider account (an SMTP relay, an FCM project, a Twilio account, ...). Adding a
/// provider kind is one module implementing this plus its configuration variant.
pub trait Provider: Send + Sync + 'static {
    /// Sends one message; classifies every failure.
    fn send<'a>(&'a self, message: &'a ChannelMessage) -> SendFuture<'a>;
}
