//! JPush: its error codes mapped to outcomes, and the wire contract against the stand-in.

use super::*;

#[test]
fn jpush_codes_map_to_outcomes() {
    let c = |status: u16, code: u64| {
        classify(
            StatusCode::from_u16(status).unwrap(),
            None,
            &json!({"error": {"code": code, "message": "m"}}),
        )
    };
    assert!(matches!(c(400, 1011), DeliveryError::DeadTarget { .. }));
    assert!(matches!(c(400, 1003), DeliveryError::Permanent { .. }));
    assert!(c(429, 2002).is_retryable());
    assert!(c(503, 1030).is_retryable());
    assert!(c(401, 1004).is_retryable());
    assert!(matches!(c(403, 2003), DeliveryError::Permanent { .. }));
}

#[tokio::test]
async fn jpush_push_keeps_the_wire_contract() {
    use crate::providers::wire_contract::{Gone, keeps_the_wire_contract, provider_for, push};
    use herald_standins::jpush::JpushStandIn;
    let standin = JpushStandIn::start_account().await.unwrap();
    let provider = provider_for(&standin, "jpush");
    let message = push("android", "1a0018970a8c3a8d3a9");
    keeps_the_wire_contract(&*provider, &standin, (&message, &message.target), Gone::DeadTarget)
        .await;
    let sent = herald_standins::Recorder::accepted(&standin);
    assert_eq!(sent[0].registration_id, "1a0018970a8c3a8d3a9");
}
