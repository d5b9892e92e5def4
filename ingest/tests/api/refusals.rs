//! What the send API refuses (malformed JSON, unknown fields, invalid addresses and numbers,
//! no key or an unknown one, an oversized body) gets a 4xx with a reason and produces
//! nothing.

use std::time::Duration;

use crate::support::{ApiEnv, email_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_or_invalid_requests_are_refused_and_nothing_is_produced() {
    let env = ApiEnv::start().await;
    let key = env.api_key().await;
    let key = Some(key.as_str());
    let api = env.serve().await;

    let (status, body) = api.post(key, r#"{"to":[{"user_id":1}],"subject":"#).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_json");

    let (status, body) = api.post(key, r#"{"to":[{"user_id":1}],"subjekt":"x"}"#).await;
    assert_eq!(status, 400, "unknown fields are refused: {body}");

    let bad_address = r#"{"to":[{"email":"not-an-address"}],"subject":"s","content":[{"type":"text/plain","value":"v"}]}"#;
    let (status, body) = api.post(key, bad_address).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "to[0].email");

    // E.164 in form, but no US number has area code 555.
    let unassigned = r#"{"to":[{"phone":"+15551234567"}],"sms":{"text":"hi"}}"#;
    let (status, body) = api.post(key, unassigned).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["field"], "to[0].phone");
    assert!(body["errors"][0]["reason"].as_str().unwrap().contains("numbering plan"), "{body}");

    let (status, body) = api.post(None, &email_body("1", "s", "t")).await;
    assert_eq!(status, 401, "no key: {body}");
    assert!(body["message"].is_string(), "{body}");
    let (status, _) = api.post(Some("hrld_0000"), &email_body("1", "s", "t")).await;
    assert_eq!(status, 401, "unknown key");

    let huge = email_body("1", "s", &"x".repeat(300 * 1024));
    let (status, body) = api.post(key, &huge).await;
    assert_eq!(status, 413, "{body}");
    api.stop().await;

    let produced = env.requests(Duration::from_secs(3), |r| !r.is_empty()).await;
    assert!(produced.is_empty(), "nothing reached herald.requests: {produced:?}");
}
