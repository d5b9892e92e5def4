//! Email through SendGrid's HTTP API against a local stand-in: the mail/send body, the
//! notification id for its event webhook, List-Unsubscribe on marketing mail only; the
//! signed Event Webhook updating a notification's status, and forged ones refused.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_dispatchers::config::{ProviderConfig, ProviderLimits, Unsubscribe};
use herald_dispatchers::providers::sendgrid::SendgridSettings;
use herald_runtime::SecretSource;
use herald_schemas::{DeliveryEvent, EventKind};
use herald_standins::sendgrid::SendgridStandIn;
use support::TestEnv;

const WAIT: Duration = Duration::from_secs(40);

fn mail(to: &str, category: &str) -> String {
    serde_json::json!({
        "to": [{"email": to}],
        "category": category,
        "from": {"email": "news@shop.example.com", "name": "Shop"},
        "subject": format!("{category} mail"),
        "content": [
            {"type": "text/plain", "value": "plain body"},
            {"type": "text/html", "value": "<p>html body</p>"},
        ],
    })
    .to_string()
}

/// A test environment whose email goes through a SendGrid stand-in.
async fn with_sendgrid() -> (TestEnv, SendgridStandIn) {
    let mut env = TestEnv::start().await;
    let sendgrid = SendgridStandIn::start("SG.test-key").await.unwrap();
    let key_file = env.dir.path().join("sendgrid-key");
    std::fs::write(&key_file, "SG.test-key\n").unwrap();
    let settings = SendgridSettings {
        api_key: SecretSource::File(key_file.display().to_string()),
        default_from: "Herald <noreply@example.com>".into(),
        unsubscribe: Unsubscribe {
            url: Some("https://prefs.example.com/unsubscribe?n={notification_id}".into()),
            mailto: None,
            categories: vec!["marketing".into()],
        },
        base_url: Some(sendgrid.base_url()),
        limits: ProviderLimits::default(),
    };
    env.config.dispatch.providers.insert("sendgrid".into(), ProviderConfig::Sendgrid(settings));
    env.config
        .dispatch
        .routes
        .insert("email".into(), BTreeMap::from([("default".into(), vec!["sendgrid".into()])]));
    (env, sendgrid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_through_sendgrid_carries_the_notification_id_and_unsubscribe_only_for_marketing() {
    let (env, sendgrid) = with_sendgrid().await;
    sendgrid.throttle(1);
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let (_, marketing) = pipeline.post(Some(&key), &mail("ada@example.com", "marketing")).await;
    let (_, receipt) = pipeline.post(Some(&key), &mail("bob@example.com", "transactional")).await;

    let deadline = Instant::now() + WAIT;
    while sendgrid.accepted().len() < 2 {
        assert!(Instant::now() < deadline, "sendgrid got {:?}", sendgrid.accepted());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = sendgrid.accepted();
    let news = accepted.iter().find(|m| m.to == "ada@example.com").unwrap();
    let personalization = &news.body["personalizations"][0];
    assert_eq!(personalization["custom_args"]["notification_id"], marketing["id"]);
    assert_eq!(
        news.body["from"],
        serde_json::json!({"email": "news@shop.example.com", "name": "Shop"})
    );
    assert_eq!(news.body["content"][0]["value"], "plain body");
    assert_eq!(news.body["content"][1]["value"], "<p>html body</p>");
    let unsubscribe =
        format!("<https://prefs.example.com/unsubscribe?n={}>", marketing["id"].as_str().unwrap());
    assert_eq!(news.body["headers"]["List-Unsubscribe"], unsubscribe.as_str());
    assert_eq!(news.body["headers"]["List-Unsubscribe-Post"], "List-Unsubscribe=One-Click");
    let message_id = news.body["headers"]["Message-ID"].as_str().unwrap();
    assert!(
        message_id.starts_with(&format!("<{}.", marketing["id"].as_str().unwrap())),
        "{message_id}"
    );
    let other = accepted.iter().find(|m| m.to == "bob@example.com").unwrap();
    assert!(other.body["headers"].get("List-Unsubscribe").is_none(), "transactional mail has none");
    assert_eq!(sendgrid.requests(), 3, "the 429 was retried once");

    let id = receipt["id"].as_str().unwrap().to_owned();
    let events = env
        .read_records::<DeliveryEvent>(
            &env.topics().events(),
            WAIT,
            move |e: &[DeliveryEvent]| {
                e.iter().any(|e| e.notification_id == id && e.kind == EventKind::Sent)
            },
        )
        .await;
    let sent = events
        .iter()
        .find(|e| e.notification_id == receipt["id"].as_str().unwrap() && e.kind == EventKind::Sent)
        .unwrap();
    assert_eq!(sent.provider.as_deref(), Some("sendgrid"));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_sendgrid_event_webhooks_update_the_status_and_forged_ones_are_refused() {
    let (mut env, sendgrid) = with_sendgrid().await;
    env.config.ingest.callbacks.sendgrid = Some(herald_ingest::config::SendgridCallbacks {
        verification_key: sendgrid.verification_key(),
    });
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let (_, answer) = pipeline.post(Some(&key), &mail("cy@example.com", "marketing")).await;
    let id = answer["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + WAIT;
    while sendgrid.accepted().is_empty() {
        assert!(Instant::now() < deadline, "not sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sent = sendgrid.accepted().remove(0);
    let endpoint = format!("{}/v1/callbacks/sendgrid", pipeline.api);
    let events = ["processed", "delivered", "open", "click"];
    assert_eq!(sendgrid.post_events(&endpoint, &sent, &events).await.unwrap(), 204);

    let deadline = Instant::now() + WAIT;
    let status = loop {
        let (_, status) = pipeline.get(&key, &format!("/v1/notifications/{id}")).await;
        if status["deliveries"][0]["state"] == "clicked" {
            break status;
        }
        assert!(Instant::now() < deadline, "never clicked: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let kinds: Vec<&str> = status["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["provider"] == "sendgrid")
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for kind in ["sent", "delivered", "opened", "clicked"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }

    // The same bounce from a key that is not SendGrid's changes nothing.
    let impostor = SendgridStandIn::start("SG.other").await.unwrap();
    assert_eq!(impostor.post_events(&endpoint, &sent, &["bounce"]).await.unwrap(), 403);
    let unsigned = pipeline.http.post(&endpoint).body("[]").send().await.unwrap();
    assert_eq!(unsigned.status(), 403);
    let (_, status) = pipeline.get(&key, &format!("/v1/notifications/{id}")).await;
    assert_eq!(status["deliveries"][0]["state"], "clicked", "{status}");
    pipeline.stop().await;
}
