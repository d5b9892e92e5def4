//! Each HTTP provider against its stand-in (herald_standins), with no broker: a send
//! in the provider's real request shape is accepted; the provider's rate limit and outage are
//! transient (retried), a gone target is never retried (a dead token is reported as dead), and
//! the next send after each fault goes through.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use herald_dispatchers::config::{
    ApnsAuth, ApnsSettings, FcmSettings, JpushSettings, ProviderLimits, PushySettings, SmsOptions,
    TwilioSettings, VonageSettings,
};
use herald_dispatchers::providers::apns::ApnsProvider;
use herald_dispatchers::providers::fcm::FcmProvider;
use herald_dispatchers::providers::jpush::JpushProvider;
use herald_dispatchers::providers::pushy::PushyProvider;
use herald_dispatchers::providers::twilio::TwilioProvider;
use herald_dispatchers::providers::vonage::VonageProvider;
use herald_dispatchers::{DeliveryError, Provider};
use herald_runtime::SecretSource;
use herald_schemas::{ChannelMessage, PushContent, SmsContent};
use herald_standins::Recorder;
use herald_standins::apns::ApnsStandIn;
use herald_standins::fcm::FcmStandIn;
use herald_standins::jpush::JpushStandIn;
use herald_standins::pushy::PushyStandIn;
use herald_standins::twilio::TwilioStandIn;
use herald_standins::vonage::VonageStandIn;

const FCM_KEY: &str = include_str!("fixtures/fcm-service-account.json");
const APNS_P8: &str = include_str!("fixtures/apns-AuthKey_TEST123456.p8");
const APNS_KEY_FILE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/apns-AuthKey_TEST123456.p8");

/// The faults a stand-in can be told to answer with.
trait Faults {
    fn throttle_once(&self);
    fn fail_once(&self);
    fn kill(&self, target: &str);
    fn accepted(&self) -> usize;
}

impl<T: Clone> Faults for Recorder<T> {
    fn throttle_once(&self) {
        self.throttle(1);
    }
    fn fail_once(&self) {
        self.fail(1);
    }
    fn kill(&self, target: &str) {
        self.unregister(target);
    }
    fn accepted(&self) -> usize {
        self.accepted_count()
    }
}

impl Faults for FcmStandIn {
    fn throttle_once(&self) {
        self.throttle(1, 2);
    }
    fn fail_once(&self) {
        self.fail_unavailable(1);
    }
    fn kill(&self, target: &str) {
        self.unregister(target);
    }
    fn accepted(&self) -> usize {
        self.accepted_count()
    }
}

impl Faults for ApnsStandIn {
    fn throttle_once(&self) {
        self.throttle(1);
    }
    fn fail_once(&self) {
        self.fail_unavailable(1);
    }
    fn kill(&self, target: &str) {
        self.unregister(target);
    }
    fn accepted(&self) -> usize {
        self.accepted_count()
    }
}

/// What a send to a gone target must be.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Gone {
    /// A push token: reported dead, so the directory stops targeting it.
    DeadTarget,
    /// A number that refuses messages: failed for good.
    Permanent,
}

/// The contract every provider keeps with its stand-in. `on_the_wire` is the target as the
/// provider writes it (Vonage drops the `+` of an E.164 number).
async fn keeps_the_wire_contract(
    provider: &dyn Provider,
    standin: &dyn Faults,
    (message, on_the_wire): (&ChannelMessage, &str),
    gone: Gone,
) {
    let before = standin.accepted();
    provider.send(message).await.unwrap_or_else(|e| panic!("a plain send: {e}"));
    assert_eq!(standin.accepted(), before + 1, "the stand-in accepted the request's shape");

    standin.throttle_once();
    let throttled = provider.send(message).await.unwrap_err();
    assert!(throttled.is_retryable(), "a rate limit is retried: {throttled}");
    provider.send(message).await.unwrap_or_else(|e| panic!("after the rate limit: {e}"));

    standin.fail_once();
    let outage = provider.send(message).await.unwrap_err();
    assert!(outage.is_retryable(), "an outage is retried: {outage}");
    provider.send(message).await.unwrap_or_else(|e| panic!("after the outage: {e}"));

    standin.kill(on_the_wire);
    let dead = provider.send(message).await.unwrap_err();
    match (gone, &dead) {
        (Gone::DeadTarget, DeliveryError::DeadTarget { .. })
        | (Gone::Permanent, DeliveryError::Permanent { .. }) => {}
        _ => panic!("a gone target must be {gone:?}, not {dead}"),
    }
    assert_eq!(standin.accepted(), before + 3, "faults accepted nothing");
}

fn secret(dir: &tempfile::TempDir, name: &str, value: &str) -> SecretSource {
    let path = dir.path().join(name);
    std::fs::write(&path, value).unwrap();
    SecretSource::File(path.display().to_string())
}

fn sms(to: &str) -> ChannelMessage {
    ChannelMessage {
        notification_id: "n-wire-1".into(),
        channel: "sms".into(),
        target: to.into(),
        route: "default".into(),
        category: "security".into(),
        sms: Some(SmsContent { text: "Your code is 482913".into() }),
        ..ChannelMessage::default()
    }
}

fn push(channel: &str, token: &str) -> ChannelMessage {
    ChannelMessage {
        notification_id: "n-wire-2".into(),
        channel: channel.into(),
        target: token.into(),
        route: "default".into(),
        category: "transactional".into(),
        push: Some(PushContent {
            title: Some("Order shipped".into()),
            body: "It is on its way".into(),
            data: BTreeMap::from([("order".into(), "42".into())]),
        }),
        ..ChannelMessage::default()
    }
}

#[tokio::test]
async fn twilio_sms_keeps_the_wire_contract() {
    herald_schemas::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let sid = "AC00000000000000000000000000000001";
    let standin = TwilioStandIn::start(sid, "twilio-token").await.unwrap();
    let settings = TwilioSettings {
        account_sid: sid.into(),
        auth_token: secret(&dir, "token", "twilio-token"),
        messaging_service_sid: None,
        status_callback: None,
        sms: SmsOptions { from: "+15005550006".into(), max_segments: 3 },
        base_url: Some(standin.base_url()),
        limits: ProviderLimits::default(),
    };
    let provider = TwilioProvider::new("twilio", &settings).unwrap();
    keeps_the_wire_contract(
        &provider,
        &*standin,
        (&sms("+14155550100"), "+14155550100"),
        Gone::Permanent,
    )
    .await;
    let sent = standin.accepted();
    assert_eq!(sent[0].from.as_deref(), Some("+15005550006"));
    assert_eq!(sent[0].body, "Your code is 482913");
}

#[tokio::test]
async fn vonage_sms_keeps_the_wire_contract() {
    herald_schemas::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let standin = VonageStandIn::start("vonage-key", "vonage-secret").await.unwrap();
    let settings = VonageSettings {
        api_key: "vonage-key".into(),
        api_secret: secret(&dir, "secret", "vonage-secret"),
        sms: SmsOptions { from: "Herald".into(), max_segments: 3 },
        base_url: Some(standin.base_url()),
        limits: ProviderLimits::default(),
    };
    let provider = VonageProvider::new("vonage", &settings).unwrap();
    keeps_the_wire_contract(
        &provider,
        &*standin,
        (&sms("+14155550100"), "14155550100"),
        Gone::Permanent,
    )
    .await;
    assert_eq!(standin.accepted()[0].text, "Your code is 482913");
}

#[tokio::test]
async fn pushy_push_keeps_the_wire_contract() {
    herald_schemas::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let standin = PushyStandIn::start("pushy-key").await.unwrap();
    let settings = PushySettings {
        api_key: secret(&dir, "key", "pushy-key"),
        time_to_live_secs: 600,
        base_url: Some(standin.base_url()),
        limits: ProviderLimits::default(),
    };
    let provider = PushyProvider::new("pushy", &settings).unwrap();
    let message = push("android", "a6345d0278adc55d3474f5");
    keeps_the_wire_contract(&provider, &*standin, (&message, &message.target), Gone::DeadTarget)
        .await;
    assert_eq!(standin.accepted()[0].to, "a6345d0278adc55d3474f5");
}

#[tokio::test]
async fn jpush_push_keeps_the_wire_contract() {
    herald_schemas::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let standin = JpushStandIn::start("jpush-app-key", "jpush-secret").await.unwrap();
    let settings = JpushSettings {
        app_key: "jpush-app-key".into(),
        master_secret: secret(&dir, "secret", "jpush-secret"),
        apns_production: false,
        time_to_live_secs: 600,
        base_url: Some(standin.base_url()),
        limits: ProviderLimits::default(),
    };
    let provider = JpushProvider::new("jpush", &settings).unwrap();
    let message = push("android", "1a0018970a8c3a8d3a9");
    keeps_the_wire_contract(&provider, &*standin, (&message, &message.target), Gone::DeadTarget)
        .await;
    assert_eq!(standin.accepted()[0].registration_id, "1a0018970a8c3a8d3a9");
}

#[tokio::test]
async fn fcm_push_keeps_the_wire_contract() {
    herald_schemas::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let standin = FcmStandIn::start(FCM_KEY).await.unwrap();
    let mut key: serde_json::Value = serde_json::from_str(FCM_KEY).unwrap();
    key["token_uri"] = standin.token_uri().into();
    let settings = FcmSettings {
        credentials: secret(&dir, "fcm.json", &key.to_string()),
        base_url: Some(standin.base_url()),
        limits: ProviderLimits::default(),
    };
    let provider = FcmProvider::new("fcm", &settings).unwrap();
    let message = push("android", "fcm-token-wire-1");
    keeps_the_wire_contract(&provider, &standin, (&message, &message.target), Gone::DeadTarget)
        .await;
    let sent = standin.accepted();
    assert_eq!(sent[0].title.as_deref(), Some("Order shipped"));
    assert_eq!(sent[0].data.get("order").map(String::as_str), Some("42"));
}

#[tokio::test]
async fn apns_push_keeps_the_wire_contract() {
    herald_schemas::install_tls_provider();
    let standin = ApnsStandIn::start(APNS_P8, "TEAMWIRE01", "TEST123456", &["com.example.shop"])
        .await
        .unwrap();
    let settings = ApnsSettings {
        auth: ApnsAuth::Token {
            team_id: "TEAMWIRE01".into(),
            key_id: "TEST123456".into(),
            key: SecretSource::File(APNS_KEY_FILE.into()),
        },
        topic: "com.example.shop".into(),
        topics: BTreeMap::new(),
        base_url: Some(standin.base_url()),
        connections: 1,
        limits: ProviderLimits::default(),
    };
    let provider = ApnsProvider::new("apns", &settings).unwrap();
    let message = push("ios", &"ab".repeat(32));
    keeps_the_wire_contract(&provider, &standin, (&message, &message.target), Gone::DeadTarget)
        .await;
    let sent = standin.accepted();
    assert_eq!(sent[0].topic, "com.example.shop");
    assert_eq!(sent[0].payload["aps"]["alert"]["title"], "Order shipped");
}
