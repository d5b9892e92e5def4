//! The wire shared by every Herald role: Avro records (the `.avsc` files in `avro/` are the
//! source of truth), the Confluent wire-format codec, topic names and header names.
//!
//! Roles depend on this crate and never on each other.

pub mod codec;
pub mod directory;
pub mod headers;
pub mod records;
pub mod registry;
pub mod targets;
pub mod topics;

pub use codec::{AvroCodec, DecodeError, EncodeError, RegistryConfig};
pub use directory::{DeviceFields, DirectoryChange, DirectoryOp, PreferenceFields, UserFields};
pub use records::{
    ChannelMessage, DeliveryEvent, DeviceTarget, EmailContent, EventKind, Fallback,
    NotificationRequest, Priority, PushContent, Recipient, Record, Sender, SmsContent, TemplateRef,
    is_urgent_category,
};
pub use topics::{
    Channel, DELAY_TIERS, DelayTier, Lane, RequestedChannel, Topics, WireRecord, delay_stop,
    delay_tier_for,
};

/// reqwest and lettre are built without a default rustls crypto provider so that exactly one
/// (ring) is compiled in; it must be installed once per process before the first TLS client.
pub fn install_tls_provider() {
    // Err only means another caller installed it first, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Milliseconds since the Unix epoch, the unit of every timestamp on the wire.
pub fn now_millis() -> i64 {
    let since_epoch =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}
