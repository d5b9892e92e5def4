//! iOS push through APNs against a local APNs stand-in speaking HTTP/2: provider tokens,
//! Apple's headers, topics per app, 410 Unregistered, 429 TooManyRequests.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::http::Version;
use herald_dispatchers::config::{ProviderConfig, ProviderLimits};
use herald_dispatchers::providers::apns::{ApnsAuth, ApnsSettings};
use herald_enricher::Platform;
use herald_enricher::directory::Directory;
use herald_runtime::SecretSource;
use herald_schemas::{Channel, DeliveryEvent, EventKind};
use herald_standins::apns::{ApnsNotification, ApnsStandIn};
use support::{TestEnv, add_user};

const WAIT: Duration = Duration::from_secs(40);
const P8: &str = include_str!("../../../dispatchers/tests/fixtures/apns-AuthKey_TEST123456.p8");
const KEY_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../dispatchers/tests/fixtures/apns-AuthKey_TEST123456.p8"
);

fn apns_settings(standin: &ApnsStandIn, team_id: &str, topic: &str) -> ApnsSettings {
    ApnsSettings {
        auth: ApnsAuth::Token {
            team_id: team_id.into(),
            key_id: "TEST123456".into(),
            key: SecretSource::File(KEY_FILE.into()),
        },
        topic: topic.into(),
        topics: BTreeMap::new(),
        base_url: Some(standin.base_url()),
        connections: 2,
        limits: ProviderLimits::default(),
    }
}

/// The environment with provider `apns-main` (team TEAMMAIN01) serving ios.
async fn with_apns(topics: &[&str]) -> (TestEnv, ApnsStandIn) {
    let mut env = TestEnv::start().await;
    let standin = ApnsStandIn::start(P8, "TEAMMAIN01", "TEST123456", topics).await.unwrap();
    let mut settings = apns_settings(&standin, "TEAMMAIN01", "com.example.shop");
    settings.topics.insert("shop-watch".into(), "com.example.shop.watchkitapp".into());
    env.config.dispatch.providers.insert("apns-main".into(), ProviderConfig::Apns(settings));
    env.config
        .dispatch
        .routes
        .insert("ios".into(), BTreeMap::from([("default".into(), vec!["apns-main".into()])]));
    (env, standin)
}

fn token(n: u8) -> String {
    format!("{n:02x}").repeat(32)
}

async fn add_iphone(env: &TestEnv, user: &str, device_token: &str, app: Option<&str>) {
    add_user(env, user, &format!("{user}@example.com")).await;
    support::add_device(env, user, Platform::Ios, device_token, app).await;
}

fn push_body(user: &str, title: &str) -> String {
    serde_json::json!({"to": [{"user_id": user}], "push": {"title": title, "body": "tap me", "data": {"screen": "orders"}}}).to_string()
}

async fn wait_for(standin: &ApnsStandIn, count: usize) -> Vec<ApnsNotification> {
    let deadline = Instant::now() + WAIT;
    while standin.accepted().len() < count {
        assert!(Instant::now() < deadline, "APNs got {:?}", standin.accepted());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    standin.accepted()
}

async fn event_of(env: &TestEnv, id: &str, kind: EventKind) -> DeliveryEvent {
    let id = id.to_owned();
    let wanted = id.clone();
    let events = env
        .read_records::<DeliveryEvent>(
            &env.topics().events(),
            WAIT,
            move |e: &[DeliveryEvent]| {
                e.iter().any(|e| e.notification_id == wanted && e.kind == kind)
            },
        )
        .await;
    events.into_iter().find(|e| e.notification_id == id && e.kind == kind).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ios_push_goes_over_http2_connections_with_one_es256_provider_token_and_apples_headers() {
    let (env, apns) = with_apns(&["com.example.shop", "com.example.shop.watchkitapp"]).await;
    add_iphone(&env, "i1", &token(1), None).await;
    add_iphone(&env, "i2", &token(2), Some("shop-watch")).await;
    let pipeline = env.pipeline_with(&[Channel::Ios]).await;
    let key = env.api_key().await;
    let (status, body) = pipeline.post(Some(&key), &push_body("i1", "first")).await;
    assert_eq!(status, 202, "{body}");
    let first_id = body["id"].as_str().unwrap().to_owned();
    for (user, title) in [("i1", "second"), ("i2", "to the watch app")] {
        let (status, body) = pipeline.post(Some(&key), &push_body(user, title)).await;
        assert_eq!(status, 202, "{body}");
    }

    let sent = wait_for(&apns, 3).await;
    assert!(apns.versions().iter().all(|v| *v == Version::HTTP_2), "{:?}", apns.versions());
    assert_eq!(apns.distinct_provider_tokens(), 1, "the provider token is signed once and reused");
    assert_eq!(apns.connections_seen(), 2, "sends are spread over the configured connections");
    let first = sent.iter().find(|n| n.payload["aps"]["alert"]["title"] == "first").unwrap();
    assert_eq!(first.device_token, token(1));
    assert_eq!(first.topic, "com.example.shop");
    assert_eq!(first.push_type, "alert");
    assert_eq!(first.priority.as_deref(), Some("10"), "transactional pushes are immediate");
    assert_eq!(first.payload["aps"]["alert"]["body"], "tap me");
    assert_eq!(first.payload["screen"], "orders");
    assert_eq!(first.payload["notification_id"], first_id.as_str());
    assert_eq!(first.collapse_id.as_deref(), Some(first_id.as_str()));
    let expiration: i64 = first.expiration.as_deref().unwrap().parse().unwrap();
    assert!(expiration > herald_schemas::now_millis() / 1000, "stored for an offline device");
    let second = sent.iter().find(|n| n.payload["aps"]["alert"]["title"] == "second").unwrap();
    assert_ne!(first.apns_id, second.apns_id, "one apns-id per notification and device");
    let watch = sent.iter().find(|n| n.device_token == token(2)).unwrap();
    assert_eq!(watch.topic, "com.example.shop.watchkitapp", "the device's app chose the topic");

    let sent_event = event_of(&env, &first_id, EventKind::Sent).await;
    assert_eq!(sent_event.provider.as_deref(), Some("apns-main"));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_device_token_gets_the_requests_priority_expiry_and_collapse_key() {
    let (env, apns) = with_apns(&["com.example.shop.watchkitapp"]).await;
    let pipeline = env.pipeline_with(&[Channel::Ios]).await;
    let key = env.api_key().await;
    let body = serde_json::json!({
        "to": [{"device": {"platform": "ios", "token": token(7), "app_id": "shop-watch"}}],
        "category": "security",
        "priority": "normal",
        "ttl": 600,
        "collapse_key": "login-code",
        "push": {"title": "Code", "body": "482913"},
    });
    let (status, accepted) = pipeline.post(Some(&key), &body.to_string()).await;
    assert_eq!(status, 202, "{accepted}");
    let bad = serde_json::json!({
        "to": [{"device": {"platform": "ios", "token": "not-a-token"}}],
        "push": {"body": "x"},
    });
    let (status, refused) = pipeline.post(Some(&key), &bad.to_string()).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["errors"][0]["field"], "to[0].device.token");

    let sent = wait_for(&apns, 1).await;
    let push = &sent[0];
    assert_eq!(push.device_token, token(7), "no directory entry needed");
    assert_eq!(push.topic, "com.example.shop.watchkitapp", "its app id chose the topic");
    assert_eq!(push.priority.as_deref(), Some("5"), "explicit normal beats the category");
    assert_eq!(push.collapse_id.as_deref(), Some("login-code"));
    let expiration: i64 = push.expiration.as_deref().unwrap().parse().unwrap();
    let expected = herald_schemas::now_millis() / 1000 + 600;
    assert!((expected - 30..=expected).contains(&expiration), "the ttl: {expiration}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_apns_410_unregistered_token_fails_and_the_device_is_deactivated() {
    let (env, apns) = with_apns(&["com.example.shop"]).await;
    add_iphone(&env, "i3", &token(3), None).await;
    apns.unregister(&token(3));
    let pipeline = env.pipeline_with(&[Channel::Ios]).await;
    let (_, body) = pipeline.post(Some(&env.api_key().await), &push_body("i3", "gone")).await;
    let id = body["id"].as_str().unwrap().to_owned();

    let failed = event_of(&env, &id, EventKind::Failed).await;
    assert_eq!(failed.detail.get("dead_target").map(String::as_str), Some("true"));
    assert!(failed.reason.as_deref().unwrap().contains("Unregistered"), "{failed:?}");
    let directory = env.directory().await;
    let deadline = Instant::now() + WAIT;
    while directory.devices("i3").await.unwrap()[0].active {
        assert!(Instant::now() < deadline, "device still active");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(apns.accepted().is_empty());
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apns_too_many_requests_is_retried_until_apple_accepts() {
    let (env, apns) = with_apns(&["com.example.shop"]).await;
    add_iphone(&env, "i4", &token(4), None).await;
    apns.throttle(1);
    apns.fail_unavailable(1);
    let pipeline = env.pipeline_with(&[Channel::Ios]).await;
    let (_, body) = pipeline.post(Some(&env.api_key().await), &push_body("i4", "eventually")).await;
    let id = body["id"].as_str().unwrap().to_owned();

    let sent = wait_for(&apns, 1).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(apns.versions().len(), 3, "429, then 503, then accepted");
    let retrying = event_of(&env, &id, EventKind::Retrying).await;
    assert!(retrying.reason.as_deref().unwrap().contains("TooManyRequests"), "{retrying:?}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_of_another_apple_team_is_sent_with_that_teams_credentials() {
    let (mut env, main) = with_apns(&["com.example.shop"]).await;
    let other =
        ApnsStandIn::start(P8, "TEAMOTHER2", "TEST123456", &["com.partner.app"]).await.unwrap();
    let settings = apns_settings(&other, "TEAMOTHER2", "com.partner.app");
    env.config.dispatch.providers.insert("apns-partner".into(), ProviderConfig::Apns(settings));
    env.config
        .dispatch
        .app_routes
        .insert("ios".into(), BTreeMap::from([("partner".into(), vec!["apns-partner".into()])]));
    add_iphone(&env, "i5", &token(5), Some("partner")).await;
    add_iphone(&env, "i6", &token(6), None).await;
    let pipeline = env.pipeline_with(&[Channel::Ios]).await;
    let key = env.api_key().await;
    for user in ["i5", "i6"] {
        let (status, body) = pipeline.post(Some(&key), &push_body(user, "hello")).await;
        assert_eq!(status, 202, "{body}");
    }
    let partner = wait_for(&other, 1).await;
    let ours = wait_for(&main, 1).await;
    assert_eq!(partner[0].device_token, token(5));
    assert_eq!(partner[0].topic, "com.partner.app");
    assert_eq!(ours[0].device_token, token(6));
    assert_eq!(ours.len() + partner.len(), 2, "each device reached once, by its own team");
    pipeline.stop().await;
}
