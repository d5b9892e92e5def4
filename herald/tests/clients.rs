//! API clients' scopes and rates at the send API: a key may be limited to channels and
//! categories (403 beyond them) and to a request rate (429 with Retry-After beyond it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use herald_ingest::{ApiClients, ClientPolicy};
use support::{TestEnv, add_user, email_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_key_is_refused_beyond_its_channels_categories_and_rate() {
    let env = TestEnv::start().await;
    add_user(&env, "scoped", "scoped@example.com").await;
    let clients = ApiClients::open(&env.config.ingest.store_path).unwrap();
    let scoped = ClientPolicy {
        channels: vec!["email".into()],
        categories: vec!["transactional".into()],
        rate_per_second: None,
    };
    let (_, key) = clients.add_with("receipts", scoped).unwrap();
    let slow = ClientPolicy { rate_per_second: Some(0.5), ..ClientPolicy::default() };
    let (_, slow_key) = clients.add_with("slow", slow).unwrap();
    let pipeline = env.pipeline().await;

    let sms = serde_json::json!({"to": [{"phone": "+14155550100"}], "sms": {"text": "hi"}});
    let (status, body) = pipeline.post(Some(&key), &sms.to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("\"sms\""), "{body}");
    let mut marketing: serde_json::Value =
        serde_json::from_str(&email_body("scoped", "Sale", "50% off")).unwrap();
    marketing["category"] = "marketing".into();
    let (status, body) = pipeline.post(Some(&key), &marketing.to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("\"marketing\""), "{body}");
    let receipt = email_body("scoped", "Receipt", "Thanks");
    let (status, body) = pipeline.post(Some(&key), &receipt).await;
    assert_eq!(status, 202, "allowed channel and category: {body}");

    let (status, body) = pipeline.post(Some(&slow_key), &receipt).await;
    assert_eq!(status, 202, "{body}");
    let (status, _, headers) = pipeline.post_with(&slow_key, &receipt, &[]).await;
    assert_eq!(status, 429, "a second request within two seconds of a 0.5/s key");
    let retry_after: f64 = headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1.0..=2.0).contains(&retry_after), "{retry_after}");

    let listed = clients.list().unwrap();
    let receipts = listed.iter().find(|c| c.name == "receipts").unwrap();
    assert_eq!(receipts.policy.channels, vec!["email".to_owned()]);
    pipeline.stop().await;
}
