//! Secrets never reach a log line or an answer: the pipeline runs at debug level with known
//! secrets (API keys, provider tokens and keys, the SMTP password, a webhook's signing
//! secret, the tracking secret, Twilio's callback token) through paths that succeed and
//! paths that fail, and no line it logs, no answer it gives and no event it writes (the
//! failure reasons callers read) holds any of them.
//! Kafka's SASL password is checked the same way in `kafka_security.rs`.

use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_dispatchers::config::{ProviderConfig, ProviderLimits, SmsOptions};
use herald_dispatchers::providers::apns::{ApnsAuth, ApnsSettings};
use herald_dispatchers::providers::fcm::FcmSettings;
use herald_dispatchers::providers::pushy::PushySettings;
use herald_dispatchers::providers::twilio::TwilioSettings;
use herald_enricher::Platform;
use herald_ingest::config::TwilioCallbacks;
use herald_runtime::SecretSource;
use herald_runtime::tracking::{Tracked, TrackingConfig};
use herald_schemas::{Channel, EventKind};
use herald_standins::apns::ApnsStandIn;
use herald_standins::fcm::FcmStandIn;
use herald_standins::twilio::TwilioStandIn;
use support::{TestEnv, add_device, add_user, herald_output};

const FCM_KEY: &str = include_str!("../../../dispatchers/tests/fixtures/fcm-service-account.json");
const APNS_P8: &str =
    include_str!("../../../dispatchers/tests/fixtures/apns-AuthKey_TEST123456.p8");
const TWILIO_SID: &str = "AC00000000000000000000000000000001";
const TWILIO_TOKEN: &str = "twilio-token-5f3a9c1e7b";
const PUSHY_KEY: &str = "pushy-api-key-3c7e91ab";
const SMTP_PASSWORD: &str = "smtp-password-6b1d0f";
const TRACKING_SECRET: &str = "tracking-secret-9e4a27";
const FORGED_KEY: &str = "hrld_0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

/// Every line the process logs, at debug level, kept for the test to read.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn capture() -> Self {
        let logs = Self::default();
        let writer = logs.clone();
        tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        logs
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A line of a PEM key's body: what a leaked key would show.
fn pem_line(pem: &str) -> String {
    let body = pem.lines().filter(|l| l.len() >= 40 && !l.starts_with("-----")).nth(1);
    body.unwrap_or_else(|| panic!("no key line in {pem}")).to_owned()
}

fn secret_file(env: &TestEnv, name: &str, value: &str) -> SecretSource {
    let path = env.dir.path().join(name);
    std::fs::write(&path, value).unwrap();
    SecretSource::File(path.display().to_string())
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_appears_in_any_debug_log_line_or_answer_on_paths_that_succeed_or_fail() {
    let logs = Logs::capture();
    let mut env = TestEnv::start().await;
    let fcm = FcmStandIn::start(FCM_KEY).await.unwrap();
    let apns = ApnsStandIn::start(APNS_P8, "TEAMMAIN01", "TEST123456", &["com.example.shop"])
        .await
        .unwrap();
    let twilio = TwilioStandIn::start(TWILIO_SID, TWILIO_TOKEN).await.unwrap();
    // Twilio fails the first try: its reason is logged and retried.
    twilio.fail(1);

    let mut fcm_key: serde_json::Value = serde_json::from_str(FCM_KEY).unwrap();
    fcm_key["token_uri"] = fcm.token_uri().into();
    let fcm_private_key = pem_line(fcm_key["private_key"].as_str().unwrap());
    let fcm_credentials = secret_file(&env, "fcm.json", &fcm_key.to_string());
    let limits = ProviderLimits { breaker_failures: 1, ..ProviderLimits::default() };
    let twilio_token = secret_file(&env, "twilio", TWILIO_TOKEN);
    let pushy_key = secret_file(&env, "pushy", PUSHY_KEY);
    let apns_key = secret_file(&env, "apns.p8", APNS_P8);
    let smtp_password = secret_file(&env, "smtp", SMTP_PASSWORD);
    let tracking_secret = secret_file(&env, "tracking", TRACKING_SECRET);
    let providers = &mut env.config.dispatch.providers;
    providers.insert(
        "fcm-main".into(),
        ProviderConfig::Fcm(FcmSettings {
            credentials: fcm_credentials,
            base_url: Some(fcm.base_url()),
            limits: ProviderLimits::default(),
        }),
    );
    // Pushy takes its key in the query string, and nothing answers at its address.
    providers.insert(
        "pushy-down".into(),
        ProviderConfig::Pushy(PushySettings {
            api_key: pushy_key,
            time_to_live_secs: 600,
            base_url: Some(format!("http://127.0.0.1:{}", closed_port())),
            limits: limits.clone(),
        }),
    );
    providers.insert(
        "apns-main".into(),
        ProviderConfig::Apns(ApnsSettings {
            auth: ApnsAuth::Token {
                team_id: "TEAMMAIN01".into(),
                key_id: "TEST123456".into(),
                key: apns_key,
            },
            topic: "com.example.shop".into(),
            topics: BTreeMap::new(),
            base_url: Some(apns.base_url()),
            connections: 1,
            limits: ProviderLimits::default(),
        }),
    );
    providers.insert(
        "twilio".into(),
        ProviderConfig::Twilio(TwilioSettings {
            account_sid: TWILIO_SID.into(),
            auth_token: twilio_token.clone(),
            messaging_service_sid: None,
            status_callback: None,
            sms: SmsOptions { from: "+15005550006".into(), max_segments: 3 },
            base_url: Some(twilio.base_url()),
            limits: ProviderLimits::default(),
        }),
    );
    let route = |providers: &[&str]| {
        BTreeMap::from([("default".into(), providers.iter().map(|p| (*p).to_owned()).collect())])
    };
    let routes = &mut env.config.dispatch.routes;
    routes.insert("android".into(), route(&["pushy-down", "fcm-main"]));
    routes.insert("ios".into(), route(&["apns-main"]));
    routes.insert("sms".into(), route(&["twilio"]));
    // The SMTP sink offers no AUTH: every email fails, with the password configured.
    env.config.dispatch.email.smtp.username = Some("herald".into());
    env.config.dispatch.email.smtp.password = Some(smtp_password);
    let tracking = TrackingConfig {
        enabled: true,
        base_url: "https://herald.example".into(),
        secret: Some(tracking_secret),
        exclude_categories: Vec::new(),
    };
    env.config.tracking = tracking.clone();
    env.config.ingest.callbacks.twilio = Some(TwilioCallbacks {
        url: "https://herald.example/v1/callbacks/twilio".into(),
        auth_token: twilio_token,
    });

    add_user(&env, "u1", "u1@example.com").await;
    add_device(&env, "u1", Platform::Android, "fcm-token-secrets-1", None).await;
    add_user(&env, "u2", "u2@example.com").await;
    add_device(&env, "u2", Platform::Ios, &"ab".repeat(32), None).await;
    let stores = herald_ingest::IngestStores::open(&env.config.ingest).await.unwrap();
    let (client, key) = stores.clients.add("secrets").await.unwrap();
    let client = client.client_id;
    let url = format!("http://127.0.0.1:{}/hook", closed_port());
    let out = herald_output(&env, &["clients", "webhook", &client, "--url", &url]);
    let webhook_secret = out
        .lines()
        .find_map(|l| l.strip_prefix("signing secret (shown once): "))
        .unwrap_or_else(|| panic!("no signing secret in {out}"))
        .to_owned();

    let pipeline = env.pipeline_with(&[Channel::Sms, Channel::Android, Channel::Ios]).await;
    let mut answers = String::new();
    let (status, body) =
        pipeline.post(Some(FORGED_KEY), &support::email_body("u1", "x", "y")).await;
    assert_eq!(status, 401, "{body}");
    answers.push_str(&body.to_string());
    let bodies = [
        serde_json::json!({"to": [{"phone": "+14155550100"}], "sms": {"text": "code 1"}}),
        serde_json::json!({"to": [{"user_id": "u1"}, {"user_id": "u2"}],
            "push": {"title": "t", "body": "b"}}),
        serde_json::json!({"to": [{"user_id": "u1"}], "from": {"email": "shop@example.com"},
            "subject": "s", "content": [{"type": "text/html",
            "value": "<a href=\"https://shop.example.com/\">shop</a>"}], "category": "marketing"}),
    ];
    let mut ids = Vec::new();
    for body in bodies {
        let (status, answer) = pipeline.post(Some(&key), &body.to_string()).await;
        assert_eq!(status, 202, "{answer}");
        answers.push_str(&answer.to_string());
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    let (sms, push, email) = (&ids[0], &ids[1], &ids[2]);
    let events = env
        .read_records::<herald_schemas::DeliveryEvent>(
            &env.topics().events(),
            Duration::from_secs(60),
            {
                let (sms, push, email) = (sms.clone(), push.clone(), email.clone());
                move |e: &[herald_schemas::DeliveryEvent]| {
                    let has = |id: &str, kinds: &[EventKind]| {
                        e.iter()
                            .filter(|e| e.notification_id == id && kinds.contains(&e.kind))
                            .count()
                    };
                    has(&sms, &[EventKind::Sent]) == 1
                        && has(&push, &[EventKind::Sent]) == 2
                        && has(&email, &[EventKind::Failed, EventKind::DeadLettered]) >= 1
                }
            },
        )
        .await;
    // Failure reasons travel on in events, to callers' webhooks and the status API.
    answers.push_str(&format!("{events:?}"));
    for id in &ids {
        let (status, answer) = pipeline.get(&key, &format!("/v1/notifications/{id}")).await;
        assert_eq!(status, 200, "{answer}");
        answers.push_str(&answer.to_string());
    }
    assert!(events.iter().any(|e| e.kind == EventKind::Retrying), "a failure was retried");

    // Tracking: a link the tracker signed, and a forged one; Twilio: a forged callback.
    let tracker = tracking.tracker().unwrap().unwrap();
    let tracked = Tracked {
        notification_id: email.clone(),
        target: "u1@example.com".into(),
        url: Some("https://shop.example.com/".into()),
    };
    let http =
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    for path in [format!("/t/c/{}", tracker.token(&tracked)), "/t/c/forged.token".into()] {
        let answer = http.get(format!("{}{path}", pipeline.api)).send().await.unwrap();
        answers.push_str(&format!("{:?}", answer.headers()));
        answers.push_str(&answer.text().await.unwrap());
    }
    let callback = http
        .post(format!("{}/v1/callbacks/twilio", pipeline.api))
        .header("X-Twilio-Signature", "Zm9yZ2Vk")
        .form(&[("MessageSid", "SM1"), ("MessageStatus", "delivered")])
        .send()
        .await
        .unwrap();
    assert_eq!(callback.status(), 403);
    answers.push_str(&callback.text().await.unwrap());
    // The webhook sender fails to post (nothing listens) and logs it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    pipeline.stop().await;

    let logged = logs.text();
    if let Ok(path) = std::env::var("HERALD_TEST_SECRETS_LOG") {
        std::fs::write(path, &logged).unwrap();
    }
    assert!(logged.lines().count() > 200, "debug logging was captured: {}", logged.len());
    assert!(logged.contains("DEBUG"), "debug lines are there");
    for (name, secret) in [
        ("the API key", key.as_str()),
        ("a forged API key", FORGED_KEY),
        ("Twilio's auth token", TWILIO_TOKEN),
        ("Pushy's API key", PUSHY_KEY),
        ("the FCM service account's private key", &fcm_private_key),
        ("the APNs signing key", &pem_line(APNS_P8)),
        ("the SMTP password", SMTP_PASSWORD),
        ("the tracking secret", TRACKING_SECRET),
        ("the webhook signing secret", &webhook_secret),
    ] {
        assert!(!logged.contains(secret), "{name} was logged");
        assert!(!answers.contains(secret), "{name} was in an answer or event");
    }
}
