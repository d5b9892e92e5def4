//! Quiet hours on the real broker: a marketing SMS inside the user's quiet hours waits in the
//! delay tiers until the window ends, its email goes at once, and a security code is not held.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use herald_dispatchers::config::{ProviderConfig, ProviderLimits};
use herald_dispatchers::providers::sandbox::SandboxSettings;
use herald_enricher::Directory as _;
use herald_schemas::{Channel, DeliveryEvent, EventKind};
use support::TestEnv;

/// `HH:MM` of `ms` in UTC.
fn hh_mm(ms: i64) -> String {
    let minutes = ms.div_euclid(60_000).rem_euclid(24 * 60);
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketing_sms_in_quiet_hours_waits_for_their_end_and_a_security_code_does_not() {
    let mut env = TestEnv::start().await;
    let sandbox = SandboxSettings {
        channel: Channel::Sms,
        record_to: Some(env.dir.path().join("sms.jsonl")),
        limits: ProviderLimits::default(),
    };
    env.config.dispatch.providers.insert("sms-sandbox".into(), ProviderConfig::Sandbox(sandbox));
    env.config
        .dispatch
        .routes
        .insert("sms".into(), BTreeMap::from([("default".into(), vec!["sms-sandbox".into()])]));
    // Quiet since an hour ago, until the next minute that is at least 15 s away.
    let now = herald_schemas::now_millis();
    let mut window_end = (now / 60_000 + 1) * 60_000;
    if window_end - now < 15_000 {
        window_end += 60_000;
    }
    let quiet_hours = format!("{}-{}", hh_mm(now - 3_600_000), hh_mm(window_end));
    env.directory()
        .await
        .upsert_user(herald_enricher::User {
            user_id: "owl".into(),
            email: Some("owl@example.com".into()),
            phone: Some("+447400123456".into()),
            timezone: Some("Etc/UTC".into()),
            quiet_hours: Some(quiet_hours),
            ..herald_enricher::User::default()
        })
        .await
        .unwrap();
    let pipeline = env.pipeline_with(&[Channel::Sms]).await;
    let key = env.api_key().await;
    let send = |category: &str, text: &str| {
        serde_json::json!({
            "to": [{"user_id": "owl"}],
            "category": category,
            "subject": "News",
            "content": [{"type": "text/plain", "value": text}],
            "sms": {"text": text},
        })
        .to_string()
    };
    let (_, marketing) = pipeline.post(Some(&key), &send("marketing", "Sale tonight")).await;
    let (_, security) = pipeline.post(Some(&key), &send("security", "Code 482913")).await;
    let ids: Vec<String> =
        [&marketing, &security].iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();

    let events: Vec<DeliveryEvent> = env
        .read_records::<DeliveryEvent>(&env.topics().events(), Duration::from_secs(120), {
            let ids = ids.clone();
            move |e: &[DeliveryEvent]| {
                let sent = |id: &String, channel: &str| {
                    e.iter().any(|e| {
                        &e.notification_id == id
                            && e.kind == EventKind::Sent
                            && e.channel.as_deref() == Some(channel)
                    })
                };
                ids.iter().all(|id| sent(id, "sms") && sent(id, "email"))
            }
        })
        .await;
    let sent_at = |id: &str, channel: &str| {
        events
            .iter()
            .find(|e| {
                e.notification_id == id
                    && e.kind == EventKind::Sent
                    && e.channel.as_deref() == Some(channel)
            })
            .unwrap()
            .occurred_at
    };
    assert!(sent_at(&ids[0], "sms") >= window_end, "the marketing SMS waited for the window's end");
    assert!(sent_at(&ids[0], "email") < window_end, "email does not wait");
    assert!(sent_at(&ids[1], "sms") < window_end, "the security code is not held");
    let deferred = events
        .iter()
        .find(|e| e.notification_id == ids[0] && e.kind == EventKind::Scheduled)
        .unwrap();
    assert_eq!(
        (deferred.channel.as_deref(), deferred.reason.as_deref()),
        (Some("sms"), Some("quiet_hours"))
    );
    assert_eq!(deferred.detail["send_at"], window_end.to_string());
    pipeline.stop().await;
}
