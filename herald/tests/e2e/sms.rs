//! SMS through Twilio and Vonage stand-ins: the providers' real request shapes, segment
//! limits, permanent refusals, and failover from a failing provider to the route's next one.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_dispatchers::config::{ProviderConfig, ProviderLimits, SmsOptions};
use herald_dispatchers::providers::twilio::TwilioSettings;
use herald_dispatchers::providers::vonage::VonageSettings;
use herald_runtime::SecretSource;
use herald_schemas::{Channel, DeliveryEvent, EventKind};
use herald_standins::twilio::TwilioStandIn;
use herald_standins::vonage::VonageStandIn;
use support::TestEnv;

const WAIT: Duration = Duration::from_secs(40);
const SID: &str = "AC00000000000000000000000000000001";

struct Sms {
    env: TestEnv,
    twilio: TwilioStandIn,
    vonage: VonageStandIn,
}

/// sms routed to `twilio` then `vonage`; each trips its breaker after two failures.
async fn with_sms_providers() -> Sms {
    let mut env = TestEnv::start().await;
    let twilio = TwilioStandIn::start(SID, "twilio-auth-token").await.unwrap();
    let vonage = VonageStandIn::start("vonage-key", "vonage-secret").await.unwrap();
    let secret = |name: &str, value: &str| {
        let path = env.dir.path().join(name);
        std::fs::write(&path, format!("{value}\n")).unwrap();
        SecretSource::File(path.display().to_string())
    };
    let limits =
        ProviderLimits { breaker_failures: 2, breaker_open_ms: 60_000, ..Default::default() };
    let sms = SmsOptions { from: "+15005550006".into(), max_segments: 3 };
    let twilio_settings = TwilioSettings {
        account_sid: SID.into(),
        auth_token: secret("twilio-token", "twilio-auth-token"),
        messaging_service_sid: None,
        status_callback: None,
        sms: sms.clone(),
        base_url: Some(twilio.base_url()),
        limits: limits.clone(),
    };
    let vonage_settings = VonageSettings {
        api_key: "vonage-key".into(),
        api_secret: secret("vonage-secret", "vonage-secret"),
        sms: SmsOptions { from: "Herald".into(), ..sms },
        base_url: Some(vonage.base_url()),
        limits,
    };
    let providers = &mut env.config.dispatch.providers;
    providers.insert("twilio".into(), ProviderConfig::Twilio(twilio_settings));
    providers.insert("vonage".into(), ProviderConfig::Vonage(vonage_settings));
    env.config.dispatch.routes.insert(
        "sms".into(),
        BTreeMap::from([("default".into(), vec!["twilio".into(), "vonage".into()])]),
    );
    Sms { env, twilio, vonage }
}

fn sms_body(phone: &str, text: &str) -> String {
    serde_json::json!({"to": [{"phone": phone}], "sms": {"text": text}}).to_string()
}

async fn events_until(env: &TestEnv, id: &str, kind: EventKind) -> Vec<DeliveryEvent> {
    let wanted = id.to_owned();
    env.read_records::<DeliveryEvent>(&env.topics().events(), WAIT, move |e: &[DeliveryEvent]| {
        e.iter().any(|e| e.notification_id == wanted && e.kind == kind)
    })
    .await
    .into_iter()
    .filter(|e| e.notification_id == id)
    .collect()
}

async fn send(pipeline: &support::RunningPipeline, key: &str, phone: &str, text: &str) -> String {
    let (status, body) = pipeline.post(Some(key), &sms_body(phone, text)).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_goes_through_twilio_with_basic_auth_and_the_messages_form() {
    let Sms { env, twilio, vonage } = with_sms_providers().await;
    let pipeline = env.pipeline_with(&[Channel::Sms]).await;
    let id = send(&pipeline, &env.api_key().await, "+14155550100", "Your code is 123456").await;

    let events = events_until(&env, &id, EventKind::Sent).await;
    let sent = events.iter().find(|e| e.kind == EventKind::Sent).unwrap();
    assert_eq!(sent.provider.as_deref(), Some("twilio"));
    let accepted = twilio.accepted();
    assert_eq!(accepted.len(), 1);
    assert_eq!(accepted[0].to, "+14155550100");
    assert_eq!(accepted[0].from.as_deref(), Some("+15005550006"));
    assert_eq!(accepted[0].body, "Your code is 123456");
    assert!(vonage.accepted().is_empty());
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_sms_provider_fails_over_to_the_next_and_nothing_is_sent_twice() {
    let Sms { env, twilio, vonage } = with_sms_providers().await;
    twilio.fail(1_000);
    let pipeline = env.pipeline_with(&[Channel::Sms]).await;
    let key = env.api_key().await;
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(send(&pipeline, &key, &format!("+1415555010{n}"), &format!("message {n}")).await);
    }
    let deadline = Instant::now() + WAIT;
    while vonage.accepted().len() < 4 {
        assert!(Instant::now() < deadline, "vonage got {:?}", vonage.accepted());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let delivered = vonage.accepted();
    let mut targets: Vec<_> = delivered.iter().map(|m| m.to.clone()).collect();
    targets.sort();
    targets.dedup();
    assert_eq!(targets.len(), 4, "each number once: {delivered:?}");
    assert!(twilio.accepted().is_empty());
    assert!(
        twilio.requests() <= 4,
        "the breaker stopped calling twilio after two failures in a row: {} calls",
        twilio.requests()
    );
    assert!(delivered.iter().all(|m| m.client_ref.as_ref().is_some_and(|r| ids.contains(r))));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unicode_sms_is_sent_as_ucs2_and_texts_over_the_segment_limit_fail_without_retry() {
    let Sms { mut env, twilio, vonage } = with_sms_providers().await;
    env.config
        .dispatch
        .routes
        .insert("sms".into(), BTreeMap::from([("default".into(), vec!["vonage".into()])]));
    let pipeline = env.pipeline_with(&[Channel::Sms]).await;
    let key = env.api_key().await;
    let korean = "인증번호는 123456 입니다. ".repeat(5); // 95 UTF-16 units: two parts
    let ok = send(&pipeline, &key, "+821012345678", &korean).await;
    let too_long = send(&pipeline, &key, "+821012345679", &"가".repeat(202)).await; // 4 parts

    events_until(&env, &ok, EventKind::Sent).await;
    let accepted = vonage.accepted();
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].unicode, "asked Vonage for type=unicode");
    assert_eq!(accepted[0].to, "821012345678", "Vonage takes numbers without the +");
    assert_eq!(accepted[0].parts, 2);
    let events = events_until(&env, &too_long, EventKind::Failed).await;
    let failed = events.iter().find(|e| e.kind == EventKind::Failed).unwrap();
    assert!(failed.reason.as_deref().unwrap().contains("4 parts"), "{failed:?}");
    assert!(events.iter().all(|e| e.kind != EventKind::Retrying), "a permanent failure");
    assert_eq!(vonage.requests(), 1, "the long text never reached the provider");
    assert_eq!(twilio.requests(), 0);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_number_that_replied_stop_fails_permanently_and_a_throttled_send_is_retried() {
    let Sms { env, twilio, .. } = with_sms_providers().await;
    twilio.unregister("+14155550199");
    twilio.throttle(1);
    let pipeline = env.pipeline_with(&[Channel::Sms]).await;
    let key = env.api_key().await;
    let stopped = send(&pipeline, &key, "+14155550199", "promo").await;
    let events = events_until(&env, &stopped, EventKind::Failed).await;
    let failed = events.iter().find(|e| e.kind == EventKind::Failed).unwrap();
    assert!(failed.reason.as_deref().unwrap().contains("21610"), "{failed:?}");
    let retried = events.iter().find(|e| e.kind == EventKind::Retrying).unwrap();
    assert!(
        retried.reason.as_deref().unwrap().contains("20429"),
        "the 429 came first: {retried:?}"
    );

    let later = send(&pipeline, &key, "+14155550198", "hello").await;
    events_until(&env, &later, EventKind::Sent).await;
    assert_eq!(twilio.accepted().len(), 1);
    assert_eq!(twilio.accepted()[0].to, "+14155550198");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sms_outage_without_failover_holds_the_channel_instead_of_burning_retries() {
    let Sms { mut env, twilio, vonage } = with_sms_providers().await;
    let dispatch = &mut env.config.dispatch;
    dispatch
        .routes
        .insert("sms".into(), BTreeMap::from([("default".into(), vec!["twilio".into()])]));
    if let Some(ProviderConfig::Twilio(t)) = dispatch.providers.get_mut("twilio") {
        t.limits.concurrency = 1;
        t.limits.breaker_open_ms = 1_500;
    }
    dispatch.retry.delays_ms = vec![1_000, 2_000, 4_000, 8_000];
    twilio.fail(u32::MAX);
    let pipeline = env.pipeline_with(&[Channel::Sms]).await;
    let key = env.api_key().await;
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.push(send(&pipeline, &key, &format!("+141555501{n:02}"), "outage").await);
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during_outage = twilio.requests();
    twilio.fail(0);

    let deadline = Instant::now() + WAIT;
    while twilio.accepted().len() < 12 {
        assert!(Instant::now() < deadline, "twilio got {}", twilio.accepted().len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        during_outage <= 7,
        "two failures open the breaker, then one probe per window: {during_outage} calls"
    );
    // What HeraldProviderBreakerOpened (docs/operating.md, "A provider is down") counts.
    let metrics = herald_runtime::metrics::render();
    let opened = metrics
        .lines()
        .filter(|l| l.starts_with("herald_provider_breaker_opened_total{"))
        .filter(|l| l.contains("provider=\"twilio\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(opened >= 1.0, "the breaker's opening is counted: {opened}");
    let mut numbers: Vec<_> = twilio.accepted().into_iter().map(|m| m.to).collect();
    numbers.sort();
    numbers.dedup();
    assert_eq!(numbers.len(), 12, "each once");
    let events = support::events_until_all(&env, &ids, EventKind::Sent).await;
    assert!(events.iter().all(|e| e.kind != EventKind::DeadLettered), "nothing dead-lettered");
    assert!(vonage.accepted().is_empty());
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twilio_status_callbacks_mark_sms_delivered_or_failed_and_forged_ones_are_refused() {
    const CALLBACK: &str = "https://herald.example.com/v1/callbacks/twilio";
    let Sms { mut env, twilio, .. } = with_sms_providers().await;
    if let Some(ProviderConfig::Twilio(settings)) = env.config.dispatch.providers.get_mut("twilio")
    {
        settings.status_callback = Some(CALLBACK.into());
    }
    let token = env.dir.path().join("twilio-token");
    env.config.ingest.callbacks.twilio = Some(herald_ingest::config::TwilioCallbacks {
        url: CALLBACK.into(),
        auth_token: SecretSource::File(token.display().to_string()),
    });
    twilio.undeliverable("+14155550177", 30003);
    let pipeline = env.pipeline_with(&[Channel::Sms]).await;
    twilio.reach_callbacks_at(&pipeline.api);
    let key = env.api_key().await;
    let reached = send(&pipeline, &key, "+14155550100", "Your code is 123456").await;
    let unreachable = send(&pipeline, &key, "+14155550177", "Your code is 654321").await;

    let state = |id: String| {
        let (pipeline, key) = (&pipeline, &key);
        async move {
            let deadline = Instant::now() + WAIT;
            loop {
                let (_, status) = pipeline.get(key, &format!("/v1/notifications/{id}")).await;
                let delivery = status["deliveries"][0].clone();
                if ["delivered", "failed"].contains(&delivery["state"].as_str().unwrap_or("")) {
                    return delivery;
                }
                assert!(Instant::now() < deadline, "no final status: {status}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let delivered = state(reached.clone()).await;
    assert_eq!(delivered["state"], "delivered", "{delivered}");
    assert_eq!(delivered["provider"], "twilio");
    let failed = state(unreachable).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(failed["reason"].as_str().unwrap().contains("30003"), "{failed}");
    assert!(twilio.accepted()[0].status_callback.as_deref().unwrap().starts_with(CALLBACK));

    // A report without Twilio's signature, or signed with another token, changes nothing.
    let forged = [
        ("MessageSid", "SM0"),
        ("MessageStatus", "failed"),
        ("To", "+14155550100"),
        ("ErrorCode", "30008"),
    ];
    let url = format!("{}/v1/callbacks/twilio?herald_notification_id={reached}", pipeline.api);
    for signature in [None, Some("bm90IHRoZSBzaWduYXR1cmU=")] {
        let mut request = pipeline.http.post(&url).form(&forged);
        if let Some(signature) = signature {
            request = request.header("X-Twilio-Signature", signature);
        }
        assert_eq!(request.send().await.unwrap().status(), 403);
    }
    let (_, status) = pipeline.get(&key, &format!("/v1/notifications/{reached}")).await;
    assert_eq!(status["deliveries"][0]["state"], "delivered", "{status}");
    pipeline.stop().await;
}
