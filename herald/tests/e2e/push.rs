//! Push through FCM HTTP v1 against a local FCM stand-in: OAuth token exchange, the message
//! shape, 429 with Retry-After, UNREGISTERED tokens.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use herald_dispatchers::config::{ProviderConfig, ProviderLimits};
use herald_dispatchers::providers::fcm::FcmSettings;
use herald_enricher::Platform;
use herald_enricher::directory::Directory;
use herald_runtime::SecretSource;
use herald_schemas::{Channel, DeliveryEvent, EventKind};
use herald_standins::fcm::FcmStandIn;
use support::{TestEnv, add_user};

const WAIT: Duration = Duration::from_secs(40);
const KEY: &str = include_str!("../../../dispatchers/tests/fixtures/fcm-service-account.json");

/// The environment with provider `fcm-main` serving android through `standin`.
async fn with_fcm() -> (TestEnv, FcmStandIn) {
    fcm_in(TestEnv::start().await).await
}

/// `env` with provider `fcm-main` serving android through `standin`.
async fn fcm_in(mut env: TestEnv) -> (TestEnv, FcmStandIn) {
    let standin = FcmStandIn::start(KEY).await.unwrap();
    let mut key: serde_json::Value = serde_json::from_str(KEY).unwrap();
    key["token_uri"] = standin.token_uri().into();
    let key_file = env.dir.path().join("fcm.json");
    std::fs::write(&key_file, key.to_string()).unwrap();
    let settings = FcmSettings {
        credentials: SecretSource::File(key_file.display().to_string()),
        base_url: Some(standin.base_url()),
        limits: ProviderLimits::default(),
    };
    env.config.dispatch.providers.insert("fcm-main".into(), ProviderConfig::Fcm(settings));
    env.config
        .dispatch
        .routes
        .insert("android".into(), BTreeMap::from([("default".into(), vec!["fcm-main".into()])]));
    (env, standin)
}

async fn add_android(env: &TestEnv, user: &str, token: &str) {
    add_user(env, user, &format!("{user}@example.com")).await;
    support::add_device(env, user, Platform::Android, token, None).await;
}

fn push_body(user: &str, title: &str) -> String {
    serde_json::json!({"to": [{"user_id": user}], "push": {"title": title, "body": "tap me", "data": {"screen": "orders"}}}).to_string()
}

async fn pipeline(env: &TestEnv) -> support::RunningPipeline {
    env.pipeline_with(&[Channel::Android]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn android_push_goes_through_fcm_v1_with_one_cached_oauth_token_and_the_id_as_collapse_key() {
    let (env, fcm) = with_fcm().await;
    add_android(&env, "a1", "fcm-token-a1").await;
    let pipeline = pipeline(&env).await;
    let key = env.api_key().await;
    let mut ids = Vec::new();
    for title in ["first", "second", "third"] {
        let (status, body) = pipeline.post(Some(&key), &push_body("a1", title)).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let deadline = std::time::Instant::now() + WAIT;
    while fcm.accepted().len() < 3 {
        assert!(std::time::Instant::now() < deadline, "FCM got {:?}", fcm.accepted());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = fcm.accepted();
    let first = sent.iter().find(|m| m.title.as_deref() == Some("first")).unwrap();
    assert_eq!(first.token, "fcm-token-a1");
    assert_eq!(first.body.as_deref(), Some("tap me"));
    assert_eq!(first.data.get("screen").map(String::as_str), Some("orders"));
    assert_eq!(first.data.get("notification_id"), Some(&ids[0]));
    assert_eq!(
        first.collapse_key.as_ref(),
        Some(&ids[0]),
        "a resend collapses into the first on the device"
    );
    assert_eq!(first.priority.as_deref(), Some("HIGH"), "transactional pushes are high priority");
    assert_eq!(fcm.token_requests(), 1, "the access token is fetched once and reused");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fcm_429_with_retry_after_is_honoured_before_the_next_attempt() {
    let (env, fcm) = with_fcm().await; // retry tiers: 1 s, 2 s
    add_android(&env, "a2", "fcm-token-a2").await;
    fcm.throttle(1, 4);
    let pipeline = pipeline(&env).await;
    let (_, body) = pipeline.post(Some(&env.api_key().await), &push_body("a2", "throttled")).await;
    let id = body["id"].as_str().unwrap().to_owned();

    let deadline = std::time::Instant::now() + WAIT;
    while fcm.accepted().is_empty() {
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = fcm.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert!(
        requests[1] - requests[0] >= 4_000,
        "waited Retry-After (4 s), not tier 1 (1 s): {requests:?}"
    );
    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, |e: &[DeliveryEvent]| {
            e.iter().any(|e| e.kind == EventKind::Sent)
        })
        .await;
    let retrying =
        events.iter().find(|e| e.notification_id == id && e.kind == EventKind::Retrying).unwrap();
    assert!(retrying.reason.as_deref().unwrap().contains("QUOTA_EXCEEDED"), "{retrying:?}");
    assert_eq!(retrying.provider.as_deref(), Some("fcm-main"));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_fcm_token_fails_the_delivery_and_is_not_targeted_again() {
    let (env, fcm) = with_fcm().await;
    send_to_a_dead_token(env, fcm).await;
}

/// The same with every store on the run's CQL node: the dead token is deactivated there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unregistered_fcm_token_is_deactivated_in_a_cql_directory_and_not_targeted_again() {
    let Some(env) = TestEnv::on_cql().await else { return };
    let (env, fcm) = fcm_in(env).await;
    send_to_a_dead_token(env, fcm).await;
}

async fn send_to_a_dead_token(env: TestEnv, fcm: FcmStandIn) {
    add_android(&env, "a3", "fcm-token-gone").await;
    fcm.unregister("fcm-token-gone");
    let pipeline = pipeline(&env).await;
    let key = env.api_key().await;
    let (_, body) = pipeline.post(Some(&key), &push_body("a3", "to a dead token")).await;
    let id = body["id"].as_str().unwrap().to_owned();

    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, {
            let id = id.clone();
            move |e: &[DeliveryEvent]| {
                e.iter().any(|e| e.notification_id == id && e.kind == EventKind::Failed)
            }
        })
        .await;
    let failed =
        events.iter().find(|e| e.notification_id == id && e.kind == EventKind::Failed).unwrap();
    assert_eq!(failed.detail.get("dead_target").map(String::as_str), Some("true"));
    assert!(failed.reason.as_deref().unwrap().contains("UNREGISTERED"));

    let directory = env.directory().await;
    let deadline = std::time::Instant::now() + WAIT;
    while directory.devices("a3").await.unwrap()[0].active {
        assert!(std::time::Instant::now() < deadline, "device still active");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = pipeline.post(Some(&key), &push_body("a3", "again")).await;
    let again = body["id"].as_str().unwrap().to_owned();
    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, {
            let again = again.clone();
            move |e: &[DeliveryEvent]| {
                e.iter().any(|e| e.notification_id == again && e.kind == EventKind::Skipped)
            }
        })
        .await;
    let skipped =
        events.iter().find(|e| e.notification_id == again && e.kind == EventKind::Skipped).unwrap();
    assert_eq!(skipped.reason.as_deref(), Some("no_device"));
    assert_eq!(fcm.requests().len(), 1, "the dead token was not tried again");
    pipeline.stop().await;
}
