//! Kafka header names: what routing needs without decoding the body.

pub const NOTIFICATION_ID: &str = "herald-notification-id";
/// Delivery attempt, starting at 1 for the first try.
pub const ATTEMPT: &str = "herald-attempt";
/// When a retry record becomes due, ms since the epoch.
pub const DUE_AT: &str = "herald-due-at";
pub const ORIGINAL_TOPIC: &str = "herald-original-topic";
pub const ORIGINAL_PARTITION: &str = "herald-original-partition";
pub const ORIGINAL_OFFSET: &str = "herald-original-offset";
/// `poison`, `permanent`, `transient`: how the failure was classified.
pub const ERROR_CLASS: &str = "herald-error-class";
pub const ERROR_REASON: &str = "herald-error-reason";
/// The reason of the first failure of a delivery, kept along the retry tiers.
pub const FIRST_FAILURE: &str = "herald-first-failure";
/// Set on records put back by `herald dlq redrive`: the dead letter's partition:offset.
pub const REDRIVEN_FROM: &str = "herald-redriven-from";
/// Set on records put back by `herald replay`: when they were replayed (ms). Carried onto
/// every record and event that follows from them.
pub const REPLAYED_AT: &str = "herald-replayed-at";
/// Set by `herald replay --force-resend`: the deliveries of the record are made once more
/// for this id, whatever the delivery ledger remembers of earlier ones.
pub const RESEND_ID: &str = "herald-resend-id";
/// The consumer group that gave up on the record.
pub const FAILED_GROUP: &str = "herald-failed-group";
pub const FAILED_AT: &str = "herald-failed-at";
