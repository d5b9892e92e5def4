//! APNs: Apple's reasons mapped to outcomes, and the wire contract against the stand-in.

use super::*;

#[test]
fn apple_reasons_map_to_outcomes() {
    let c = |status: u16, reason: &str| {
        classify(StatusCode::from_u16(status).unwrap(), None, &json!({"reason": reason}))
    };
    assert!(matches!(c(410, "Unregistered"), DeliveryError::DeadTarget { .. }));
    assert!(matches!(c(400, "BadDeviceToken"), DeliveryError::DeadTarget { .. }));
    assert!(matches!(c(400, "DeviceTokenNotForTopic"), DeliveryError::DeadTarget { .. }));
    assert!(matches!(c(413, "PayloadTooLarge"), DeliveryError::Permanent { .. }));
    assert!(matches!(c(400, "TopicDisallowed"), DeliveryError::Permanent { .. }));
    assert!(c(403, "ExpiredProviderToken").is_retryable());
    assert!(c(503, "ServiceUnavailable").is_retryable());
    assert!(matches!(
        c(429, "TooManyRequests"),
        DeliveryError::Transient { retry_after: Some(_), .. }
    ));
}

#[test]
fn apns_id_is_a_stable_uuid_per_device() {
    let mut m = crate::providers::tests_support::push_message("n-1", "ab".repeat(32).as_str());
    let id = apns_id(&m);
    assert_eq!(id.len(), 36);
    assert_eq!(id, apns_id(&m));
    m.target = "cd".repeat(32);
    assert_ne!(id, apns_id(&m));
}

#[tokio::test]
async fn apns_push_keeps_the_wire_contract() {
    use crate::providers::wire_contract::{Gone, keeps_the_wire_contract, provider_for, push};
    use herald_standins::apns::ApnsStandIn;
    let standin = ApnsStandIn::start_account().await.unwrap();
    let provider = provider_for(&standin, "apns");
    let message = push("ios", &"ab".repeat(32));
    keeps_the_wire_contract(&*provider, &standin, (&message, &message.target), Gone::DeadTarget)
        .await;
    let sent = ApnsStandIn::accepted(&standin);
    assert_eq!(sent[0].topic, "com.example.standin");
    assert_eq!(sent[0].payload["aps"]["alert"]["title"], "Order shipped");
}
