//! Region routing: the enricher puts the user's region route on each message and the android
//! dispatcher sends it through that route's provider (JPush in China, Pushy elsewhere here).

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_dispatchers::config::{ProviderConfig, ProviderLimits};
use herald_dispatchers::providers::jpush::JpushSettings;
use herald_dispatchers::providers::pushy::PushySettings;
use herald_enricher::directory::Directory;
use herald_enricher::{Platform, RegionRoutes, User};
use herald_runtime::SecretSource;
use herald_schemas::{Channel, EventKind};
use herald_standins::jpush::JpushStandIn;
use herald_standins::pushy::PushyStandIn;
use support::TestEnv;

const WAIT: Duration = Duration::from_secs(40);

async fn with_regions() -> (TestEnv, JpushStandIn, PushyStandIn) {
    let mut env = TestEnv::start().await;
    let jpush = JpushStandIn::start("jpush-app-key", "jpush-master-secret").await.unwrap();
    let pushy = PushyStandIn::start("pushy-secret-key").await.unwrap();
    let secret = |name: &str, value: &str| {
        let path = env.dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        SecretSource::File(path.display().to_string())
    };
    let jpush_settings = JpushSettings {
        app_key: "jpush-app-key".into(),
        master_secret: secret("jpush-secret", "jpush-master-secret"),
        apns_production: false,
        time_to_live_secs: 3_600,
        base_url: Some(jpush.base_url()),
        limits: ProviderLimits::default(),
    };
    let pushy_settings = PushySettings {
        api_key: secret("pushy-key", "pushy-secret-key"),
        time_to_live_secs: 600,
        base_url: Some(pushy.base_url()),
        limits: ProviderLimits::default(),
    };
    let dispatch = &mut env.config.dispatch;
    dispatch.providers.insert("jpush-cn".into(), ProviderConfig::Jpush(jpush_settings));
    dispatch.providers.insert("pushy".into(), ProviderConfig::Pushy(pushy_settings));
    dispatch.routes.insert(
        "android".into(),
        BTreeMap::from([
            ("default".into(), vec!["pushy".into()]),
            ("china".into(), vec!["jpush-cn".into()]),
        ]),
    );
    env.config.enricher.region_routes = RegionRoutes::new(BTreeMap::from([(
        Channel::Android,
        BTreeMap::from([("CN".to_owned(), "china".to_owned())]),
    )]));
    (env, jpush, pushy)
}

async fn add_android_user(env: &TestEnv, user: &str, region: &str, token: &str) {
    let directory = env.directory().await;
    directory
        .upsert_user(User {
            user_id: user.into(),
            email: None,
            phone: None,
            locale: None,
            timezone: None,
            region: Some(region.into()),
            quiet_hours: None,
        })
        .await
        .unwrap();
    support::add_device(env, user, Platform::Android, token, None).await;
}

fn push_body(user: &str) -> String {
    serde_json::json!({"to": [{"user_id": user}], "category": "marketing",
        "push": {"title": "Sale", "body": "50% off", "data": {"screen": "sale"}}})
    .to_string()
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn android_users_in_china_go_through_jpush_and_others_through_pushy() {
    let (env, jpush, pushy) = with_regions().await;
    add_android_user(&env, "cn-user", "CN", "1a0018970a8b2c3d").await;
    add_android_user(&env, "de-user", "DE", "a6345d0278adc55d3474f5").await;
    let pipeline = env.pipeline_with(&[Channel::Android]).await;
    let key = env.api_key().await;
    let (_, cn) = pipeline.post(Some(&key), &push_body("cn-user")).await;
    let (_, de) = pipeline.post(Some(&key), &push_body("de-user")).await;
    wait_until("both pushes", || jpush.accepted().len() == 1 && pushy.accepted().len() == 1).await;

    let china = &jpush.accepted()[0];
    assert_eq!(china.platform, "android");
    assert_eq!(china.registration_id, "1a0018970a8b2c3d");
    assert_eq!(china.notification["alert"], "50% off");
    assert_eq!(china.notification["title"], "Sale");
    assert_eq!(china.notification["extras"]["notification_id"], cn["id"]);
    assert_eq!(china.options["time_to_live"], 3_600);
    let elsewhere = &pushy.accepted()[0];
    assert_eq!(elsewhere.to, "a6345d0278adc55d3474f5");
    assert_eq!(elsewhere.data["notification_id"], de["id"]);
    assert_eq!(elsewhere.data["screen"], "sale");
    assert_eq!(elsewhere.notification["title"], "Sale");
    assert_eq!(elsewhere.time_to_live, Some(600));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_ids_jpush_and_pushy_do_not_know_are_deactivated() {
    let (env, jpush, pushy) = with_regions().await;
    add_android_user(&env, "cn-gone", "CN", "gone-jpush-id").await;
    add_android_user(&env, "de-gone", "DE", "gone-pushy-token").await;
    jpush.unregister("gone-jpush-id");
    pushy.unregister("gone-pushy-token");
    jpush.throttle(1);
    let pipeline = env.pipeline_with(&[Channel::Android]).await;
    let key = env.api_key().await;
    let (_, cn) = pipeline.post(Some(&key), &push_body("cn-gone")).await;
    let (_, de) = pipeline.post(Some(&key), &push_body("de-gone")).await;
    let ids = [cn["id"].as_str().unwrap().to_owned(), de["id"].as_str().unwrap().to_owned()];

    let events = support::events_until_all(&env, &ids, EventKind::Failed).await;
    for (id, provider, reason) in
        [(&ids[0], "jpush-cn", "1011"), (&ids[1], "pushy", "not registered")]
    {
        let failed = events
            .iter()
            .find(|e| &e.notification_id == id && e.kind == EventKind::Failed)
            .unwrap();
        assert_eq!(failed.provider.as_deref(), Some(provider));
        assert_eq!(failed.detail.get("dead_target").map(String::as_str), Some("true"));
        assert!(failed.reason.as_deref().unwrap().contains(reason), "{failed:?}");
    }
    assert!(
        events.iter().any(|e| e.notification_id == ids[0] && e.kind == EventKind::Retrying),
        "JPush's 2002 throttle was retried before the 1011"
    );
    let directory = env.directory().await;
    for user in ["cn-gone", "de-gone"] {
        let deadline = Instant::now() + WAIT;
        while directory.devices(user).await.unwrap()[0].active {
            assert!(Instant::now() < deadline, "{user}'s device still active");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(jpush.accepted().is_empty() && pushy.accepted().is_empty());
    pipeline.stop().await;
}
