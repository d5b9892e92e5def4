//! Vonage: its per-part statuses mapped to outcomes, and the wire contract against the stand-in.

use super::*;

#[test]
fn vonage_statuses_map_to_outcomes() {
    assert!(classify_status("1", "Throttled").is_retryable());
    assert!(classify_status("5", "Internal Error").is_retryable());
    assert!(matches!(classify_status("3", "Invalid to"), DeliveryError::Permanent { .. }));
    assert!(matches!(classify_status("29", "Non White-listed"), DeliveryError::Permanent { .. }));
}

#[tokio::test]
async fn vonage_sms_keeps_the_wire_contract() {
    use crate::providers::wire_contract::{Gone, keeps_the_wire_contract, provider_for, sms};
    use herald_standins::vonage::VonageStandIn;
    let standin = VonageStandIn::start_account().await.unwrap();
    let provider = provider_for(&standin, "vonage");
    let message = sms("+14155550100");
    keeps_the_wire_contract(&*provider, &standin, (&message, "14155550100"), Gone::Permanent).await;
    assert_eq!(herald_standins::Recorder::accepted(&standin)[0].text, "Your code is 482913");
}
