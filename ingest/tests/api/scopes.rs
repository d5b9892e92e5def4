//! An API client's scope: a key may be limited to channels and categories (403 with the
//! reason beyond them) and to a rate (429 with Retry-After above it).

use crate::support::{ApiEnv, email_body};
use herald_ingest::{ClientPolicy, IngestStores};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scoped_key_is_refused_beyond_its_channels_categories_and_rate() {
    let env = ApiEnv::start().await;
    let clients = IngestStores::open(&env.config).await.unwrap().clients;
    let scoped = ClientPolicy {
        channels: vec!["email".into()],
        categories: vec!["transactional".into()],
        rate_per_second: None,
        directory: None,
    };
    let (_, key) = clients.add_with("receipts", scoped).await.unwrap();
    let slow = ClientPolicy { rate_per_second: Some(0.5), ..ClientPolicy::default() };
    let (_, slow_key) = clients.add_with("slow", slow).await.unwrap();
    let api = env.serve().await;

    let sms = serde_json::json!({"to": [{"phone": "+14155550100"}], "sms": {"text": "hi"}});
    let (status, body) = api.post(Some(&key), &sms.to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("\"sms\""), "{body}");
    let mut marketing: serde_json::Value =
        serde_json::from_str(&email_body("scoped", "Sale", "50% off")).unwrap();
    marketing["category"] = "marketing".into();
    let (status, body) = api.post(Some(&key), &marketing.to_string()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body["message"].as_str().unwrap().contains("\"marketing\""), "{body}");
    let receipt = email_body("scoped", "Receipt", "Thanks");
    let (status, body) = api.post(Some(&key), &receipt).await;
    assert_eq!(status, 202, "allowed channel and category: {body}");

    let (status, body) = api.post(Some(&slow_key), &receipt).await;
    assert_eq!(status, 202, "{body}");
    let (status, _, headers) = api.post_with(Some(&slow_key), &receipt, &[]).await;
    assert_eq!(status, 429, "a second request within two seconds of a 0.5/s key");
    let retry_after: f64 = headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!((1.0..=2.0).contains(&retry_after), "{retry_after}");

    let listed = clients.list().await.unwrap();
    let receipts = listed.iter().find(|c| c.name == "receipts").unwrap();
    assert_eq!(receipts.policy.channels, vec!["email".to_owned()]);
    api.stop().await;
}
