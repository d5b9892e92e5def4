//! SendGrid: senders, answers mapped to outcomes, and the wire contract against the stand-in.

use super::*;

#[test]
fn senders_parse_with_or_without_a_name() {
    assert_eq!(
        email_object("Herald <noreply@example.com>"),
        Some(json!({"email": "noreply@example.com", "name": "Herald"}))
    );
    assert_eq!(email_object("noreply@example.com"), Some(json!({"email": "noreply@example.com"})));
    assert_eq!(email_object("nobody"), None);
}

#[test]
fn sendgrid_errors_map_to_outcomes() {
    let c = |status: u16| {
        classify(
            StatusCode::from_u16(status).unwrap(),
            None,
            &json!({"errors": [{"message": "m", "field": "f"}]}),
        )
    };
    assert!(matches!(c(400), DeliveryError::Permanent { .. }));
    assert!(matches!(c(413), DeliveryError::Permanent { .. }));
    assert!(c(401).is_retryable());
    assert!(c(429).is_retryable());
    assert!(c(503).is_retryable());
}

#[tokio::test]
async fn sendgrid_email_keeps_the_wire_contract() {
    use crate::providers::wire_contract::{Gone, email, keeps_the_wire_contract, provider_for};
    use herald_standins::sendgrid::SendgridStandIn;
    let standin = SendgridStandIn::start_account().await.unwrap();
    let provider = provider_for(&standin, "sendgrid");
    let message = email("ada@example.com");
    keeps_the_wire_contract(&*provider, &standin, (&message, "ada@example.com"), Gone::Permanent)
        .await;
    let sent = herald_standins::Recorder::accepted(&standin);
    assert_eq!(sent[0].to, "ada@example.com");
    assert_eq!(sent[0].body["subject"], "Order shipped");
}
