//! Twilio: its error codes mapped to outcomes, and the wire contract against the stand-in.

use serde_json::json;

use super::*;

#[test]
fn twilio_errors_map_to_outcomes() {
    let c = |status: u16, code: u64| {
        classify(
            StatusCode::from_u16(status).unwrap(),
            Some(Duration::from_secs(3)),
            &json!({"code": code, "message": "m", "status": status}),
        )
    };
    assert!(matches!(c(400, 21211), DeliveryError::Permanent { .. }));
    assert!(matches!(c(400, 21610), DeliveryError::Permanent { .. }));
    assert!(matches!(
        c(429, 20429),
        DeliveryError::Transient { retry_after: Some(d), .. } if d == Duration::from_secs(3)
    ));
    assert!(c(503, 0).is_retryable());
    assert!(c(401, 20003).is_retryable());
}

#[tokio::test]
async fn twilio_sms_keeps_the_wire_contract() {
    use crate::providers::wire_contract::{Gone, keeps_the_wire_contract, provider_for, sms};
    use herald_standins::twilio::TwilioStandIn;
    let standin = TwilioStandIn::start_account().await.unwrap();
    let provider = provider_for(&standin, "twilio");
    let message = sms("+14155550100");
    keeps_the_wire_contract(&*provider, &standin, (&message, "+14155550100"), Gone::Permanent)
        .await;
    let sent = herald_standins::Recorder::accepted(&standin);
    assert_eq!(sent[0].from.as_deref(), Some("+15005550006"));
    assert_eq!(sent[0].body, "Your code is 482913");
}
