//! FCM: Google's errors mapped to outcomes, and the wire contract against the stand-in.

use super::*;

fn error(code: u16, status: &str, fcm: Option<&str>, message: &str) -> (StatusCode, Value) {
    let details = fcm.map_or(json!([]), |c| json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": c}]));
    let body =
        json!({"error": {"code": code, "message": message, "status": status, "details": details}});
    (StatusCode::from_u16(code).unwrap(), body)
}

#[test]
fn fcm_errors_map_to_outcomes() {
    let (s, b) = error(404, "NOT_FOUND", Some("UNREGISTERED"), "Requested entity was not found.");
    assert!(matches!(classify(s, None, &b), DeliveryError::DeadTarget { .. }));
    let (s, b) = error(
        400,
        "INVALID_ARGUMENT",
        Some("INVALID_ARGUMENT"),
        "The registration token is not a valid FCM registration token",
    );
    assert!(matches!(classify(s, None, &b), DeliveryError::DeadTarget { .. }));
    let (s, b) =
        error(400, "INVALID_ARGUMENT", Some("INVALID_ARGUMENT"), "Invalid JSON payload received.");
    assert!(matches!(classify(s, None, &b), DeliveryError::Permanent { .. }));
    let (s, b) = error(429, "RESOURCE_EXHAUSTED", Some("QUOTA_EXCEEDED"), "quota");
    let retry = Some(Duration::from_secs(30));
    assert_eq!(
        classify(s, retry, &b),
        DeliveryError::Transient {
            reason: "FCM 429 QUOTA_EXCEEDED: quota".into(),
            retry_after: retry
        }
    );
    let (s, b) = error(503, "UNAVAILABLE", Some("UNAVAILABLE"), "overloaded");
    assert!(classify(s, None, &b).is_retryable());
    let (s, b) = error(403, "PERMISSION_DENIED", Some("SENDER_ID_MISMATCH"), "mismatch");
    assert!(matches!(classify(s, None, &b), DeliveryError::DeadTarget { .. }));
}

#[tokio::test]
async fn fcm_push_keeps_the_wire_contract() {
    use crate::providers::wire_contract::{Gone, keeps_the_wire_contract, provider_for, push};
    use herald_standins::fcm::FcmStandIn;
    let standin = FcmStandIn::start_account().await.unwrap();
    let provider = provider_for(&standin, "fcm");
    let message = push("android", "fcm-token-wire-1");
    keeps_the_wire_contract(&*provider, &standin, (&message, &message.target), Gone::DeadTarget)
        .await;
    let sent = FcmStandIn::accepted(&standin);
    assert_eq!(sent[0].title.as_deref(), Some("Order shipped"));
    assert_eq!(sent[0].data.get("order").map(String::as_str), Some("42"));
}
