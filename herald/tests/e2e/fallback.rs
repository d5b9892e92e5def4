//! Channel fallback per category: a security push goes out by SMS when the user has no
//! active device, or when the push fails for good, and then only once.

use crate::support;

use herald_enricher::Directory as _;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_dispatchers::config::{ProviderConfig, ProviderLimits, SmsOptions};
use herald_dispatchers::providers::pushy::PushySettings;
use herald_dispatchers::providers::twilio::TwilioSettings;
use herald_enricher::{Fallbacks, Platform, User};
use herald_runtime::SecretSource;
use herald_schemas::{Channel, EventKind};
use herald_standins::pushy::PushyStandIn;
use herald_standins::twilio::TwilioStandIn;
use support::TestEnv;

const SID: &str = "AC00000000000000000000000000000002";

async fn with_fallback() -> (TestEnv, PushyStandIn, TwilioStandIn) {
    let mut env = TestEnv::start().await;
    let pushy = PushyStandIn::start("pushy-key").await.unwrap();
    let twilio = TwilioStandIn::start(SID, "twilio-token").await.unwrap();
    let secret = |name: &str, value: &str| {
        let path = env.dir.path().join(name);
        std::fs::write(&path, value).unwrap();
        SecretSource::File(path.display().to_string())
    };
    let pushy_settings = PushySettings {
        api_key: secret("pushy", "pushy-key"),
        time_to_live_secs: 60,
        base_url: Some(pushy.base_url()),
        limits: ProviderLimits::default(),
    };
    let twilio_settings = TwilioSettings {
        account_sid: SID.into(),
        auth_token: secret("twilio", "twilio-token"),
        messaging_service_sid: None,
        status_callback: None,
        sms: SmsOptions { from: "+15005550006".into(), max_segments: 2 },
        base_url: Some(twilio.base_url()),
        limits: ProviderLimits::default(),
    };
    let dispatch = &mut env.config.dispatch;
    dispatch.providers.insert("pushy".into(), ProviderConfig::Pushy(pushy_settings));
    dispatch.providers.insert("twilio".into(), ProviderConfig::Twilio(twilio_settings));
    let route = |p: &str| BTreeMap::from([("default".to_owned(), vec![p.to_owned()])]);
    dispatch.routes.insert("android".into(), route("pushy"));
    dispatch.routes.insert("sms".into(), route("twilio"));
    env.config.enricher.fallback = Fallbacks::new(BTreeMap::from([(
        "security".to_owned(),
        BTreeMap::from([("push".to_owned(), Channel::Sms)]),
    )]));
    (env, pushy, twilio)
}

async fn add_user_with_phone(env: &TestEnv, user: &str, phone: &str) {
    let user = User {
        user_id: user.into(),
        email: None,
        phone: Some(phone.into()),
        locale: None,
        timezone: None,
        region: None,
        quiet_hours: None,
    };
    env.directory().await.upsert_user(user).await.unwrap();
}

fn security_push(user: &str) -> String {
    serde_json::json!({"to": [{"user_id": user}], "category": "security",
        "push": {"title": "Sign-in code", "body": "482913"}})
    .to_string()
}

async fn wait_for_sms(twilio: &TwilioStandIn, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(40);
    while twilio.accepted().len() < count {
        assert!(Instant::now() < deadline, "twilio got {:?}", twilio.accepted());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_push_to_a_user_without_devices_is_sent_by_sms() {
    let (env, pushy, twilio) = with_fallback().await;
    add_user_with_phone(&env, "no-phone-app", "+14155550111").await;
    let pipeline = env.pipeline_with(&[Channel::Android, Channel::Sms]).await;
    let (status, body) =
        pipeline.post(Some(&env.api_key().await), &security_push("no-phone-app")).await;
    assert_eq!(status, 202, "{body}");

    wait_for_sms(&twilio, 1).await;
    let sms = &twilio.accepted()[0];
    assert_eq!(sms.to, "+14155550111");
    assert_eq!(sms.body, "Sign-in code: 482913");
    let id = body["id"].as_str().unwrap().to_owned();
    let events = support::events_until_all(&env, &[id], EventKind::Sent).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == EventKind::Skipped && e.reason.as_deref() == Some("no_device"))
    );
    assert!(events.iter().any(|e| e.kind == EventKind::Routed
        && e.detail.get("fallback_from").map(String::as_str) == Some("push")));
    assert_eq!(pushy.requests(), 0);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_security_push_that_fails_for_good_falls_back_to_one_sms() {
    let (env, pushy, twilio) = with_fallback().await;
    add_user_with_phone(&env, "stale", "+14155550122").await;
    for token in ["stale-token-a", "stale-token-b"] {
        support::add_device(&env, "stale", Platform::Android, token, Some(token)).await;
        pushy.unregister(token);
    }
    let pipeline = env.pipeline_with(&[Channel::Android, Channel::Sms]).await;
    let (status, body) = pipeline.post(Some(&env.api_key().await), &security_push("stale")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    wait_for_sms(&twilio, 1).await;
    let events = support::events_until_all(&env, std::slice::from_ref(&id), EventKind::Sent).await;
    let failed: Vec<_> =
        events.iter().filter(|e| e.notification_id == id && e.kind == EventKind::Failed).collect();
    assert_eq!(failed.len(), 2, "{events:?}");
    assert!(failed.iter().all(|e| e.detail.get("fallback").map(String::as_str) == Some("sms")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pushy.requests(), 2, "both devices were tried");
    assert_eq!(twilio.accepted().len(), 1, "two failed pushes, one SMS: {:?}", twilio.accepted());
    assert_eq!(twilio.accepted()[0].body, "Sign-in code: 482913");
    pipeline.stop().await;
}
