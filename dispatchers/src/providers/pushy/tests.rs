//! Pushy: its errors mapped to outcomes, and the wire contract against the stand-in.

use super::*;

#[test]
fn pushy_errors_map_to_outcomes() {
    let c = |status: u16, code: &str| {
        classify(StatusCode::from_u16(status).unwrap(), None, &json!({"code": code, "error": "m"}))
    };
    assert!(matches!(c(400, "INVALID_PARAM"), DeliveryError::Permanent { .. }));
    assert!(c(429, "RATE_LIMIT_EXCEEDED").is_retryable());
    assert!(c(401, "INVALID_API_KEY").is_retryable());
    assert!(c(502, "INTERNAL_SERVER_ERROR").is_retryable());
}

#[tokio::test]
async fn pushy_push_keeps_the_wire_contract() {
    use crate::providers::wire_contract::{Gone, keeps_the_wire_contract, provider_for, push};
    use herald_standins::pushy::PushyStandIn;
    let standin = PushyStandIn::start_account().await.unwrap();
    let provider = provider_for(&standin, "pushy");
    let message = push("android", "a6345d0278adc55d3474f5");
    keeps_the_wire_contract(&*provider, &standin, (&message, &message.target), Gone::DeadTarget)
        .await;
    assert_eq!(herald_standins::Recorder::accepted(&standin)[0].to, "a6345d0278adc55d3474f5");
}
