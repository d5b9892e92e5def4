//! Stored templates rendered by the enricher in the user's locale, and the delivery options
//! that travel with a request: a stale request is dropped, never sent.

use crate::support;

use herald_enricher::Directory as _;
use std::time::Duration;

use herald_enricher::{TemplateVariant, User};
use herald_schemas::{ChannelMessage, DeliveryEvent, EventKind, NotificationRequest};
use support::{TestEnv, add_user, events_until_all};

const WAIT: Duration = Duration::from_secs(30);

fn email_variant(locale: &str, subject: &str, body: &str) -> TemplateVariant {
    TemplateVariant {
        template_id: "order-shipped".into(),
        locale: locale.into(),
        channel: "email".into(),
        subject: Some(subject.into()),
        title: None,
        body: body.into(),
        html: Some("<p>{{ item }}</p>".into()),
    }
}

/// RFC 2047 encoded words (`=?utf-8?b?...?=`) decoded; other text kept.
fn decode_words(header: &str) -> String {
    use base64::Engine as _;
    header
        .split(' ')
        .map(|word| match word.strip_prefix("=?utf-8?b?").and_then(|w| w.strip_suffix("?=")) {
            Some(encoded) => String::from_utf8(
                base64::engine::general_purpose::STANDARD.decode(encoded).unwrap(),
            )
            .unwrap(),
            None => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The base64 MIME parts of a message, decoded.
fn decoded_parts(raw: &str) -> Vec<String> {
    use base64::Engine as _;
    raw.split("Content-Transfer-Encoding: base64\r\n\r\n")
        .skip(1)
        .map(|rest| {
            let body: String = rest.split("\r\n--").next().unwrap().split("\r\n").collect();
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(body).unwrap())
                .unwrap()
        })
        .collect()
}

async fn korean_user(env: &TestEnv, user_id: &str, email: &str) {
    env.directory()
        .await
        .upsert_user(User {
            user_id: user_id.into(),
            email: Some(email.into()),
            phone: None,
            locale: Some("ko-KR".into()),
            timezone: None,
            region: None,
            quiet_hours: None,
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_renders_in_the_users_locale_with_fallback_and_a_missing_variable_fails_only_that_notification()
 {
    let env = TestEnv::start().await;
    let directory = env.directory().await;
    let variants = vec![
        email_variant("", "Order {{ order }} shipped", "Hi {{ user.id }}"),
        email_variant("ko", "주문 {{ order }} 발송", "{{ item }} 발송 완료"),
    ];
    directory.put_template("order-shipped", variants).await.unwrap();
    korean_user(&env, "ko-user", "ji@example.com").await;
    add_user(&env, "en-user", "ada@example.com").await;
    let key = env.api_key().await;
    let pipeline = env.pipeline().await;

    let send = |user: &str, data: serde_json::Value| {
        serde_json::json!({"to": [{"user_id": user}], "template_id": "order-shipped", "data": data})
            .to_string()
    };
    let full = serde_json::json!({"order": 42, "item": "<Lamp>"});
    let (status, korean) = pipeline.post(Some(&key), &send("ko-user", full.clone())).await;
    assert_eq!(status, 202, "{korean}");
    let (_, english) = pipeline.post(Some(&key), &send("en-user", full)).await;
    let (_, missing) =
        pipeline.post(Some(&key), &send("en-user", serde_json::json!({"item": "x"}))).await;
    let unknown = serde_json::json!({"to": [{"user_id": "en-user"}], "template_id": "nope"});
    let (status, unknown) = pipeline.post(Some(&key), &unknown.to_string()).await;
    assert_eq!(
        status, 202,
        "written past `herald directory import`: only the enricher knows: {unknown}"
    );

    let mail = env.mail.wait_for(WAIT, |m| m.to == ["ji@example.com"]).await.expect("ko mail");
    assert_eq!(decode_words(&mail.header("Subject").unwrap()), "주문 42 발송", "ko-KR → ko");
    let parts = decoded_parts(&mail.raw);
    assert!(parts.iter().any(|p| p == "<Lamp> 발송 완료"), "{parts:?}");
    // The HTML part is ASCII, so not base64.
    assert!(mail.raw.contains("<p>&lt;Lamp&gt;</p>"), "HTML escapes variables: {}", mail.raw);
    let mail = env.mail.wait_for(WAIT, |m| m.to == ["ada@example.com"]).await.expect("en mail");
    assert_eq!(mail.header("Subject").as_deref(), Some("Order 42 shipped"), "default locale");
    assert!(mail.raw.contains("\r\n\r\nHi en-user\r\n"), "user variables: {}", mail.raw);

    let ids: Vec<String> =
        [&missing, &unknown].iter().map(|b| b["id"].as_str().unwrap().to_owned()).collect();
    let events = events_until_all(&env, &ids, EventKind::Failed).await;
    let failed = |id: &str| {
        events.iter().find(|e| e.notification_id == id && e.kind == EventKind::Failed).unwrap()
    };
    assert_eq!(failed(&ids[0]).reason.as_deref(), Some("template_error"));
    let error = &failed(&ids[0]).detail["error"];
    assert!(error.contains("missing variables: order"), "{error}");
    assert_eq!(failed(&ids[1]).reason.as_deref(), Some("unknown_template"));
    for id in [&ids[0], &ids[1], english["id"].as_str().unwrap(), korean["id"].as_str().unwrap()] {
        assert!(
            !events.iter().any(|e| e.notification_id == *id && e.kind == EventKind::DeadLettered),
            "a template problem is the notification's outcome, not poison"
        );
    }
    let status = pipeline
        .http
        .get(format!("{}/v1/notifications/{}", pipeline.api, ids[1]))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let status: serde_json::Value = status.json().await.unwrap();
    assert!(status.to_string().contains("unknown_template"), "status API shows it: {status}");
    // The notification's own state is failed, with the reason (not `accepted` forever).
    let deadline = std::time::Instant::now() + WAIT;
    let status = loop {
        let (_, status) = pipeline.get(&key, &format!("/v1/notifications/{}", ids[0])).await;
        if status["state"] == "failed" {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "never failed: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let reason = status["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("missing variables: order"), "{status}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_request_or_message_is_dropped_with_an_expired_event_and_never_sent() {
    let env = TestEnv::start().await;
    add_user(&env, "late-user", "late@example.com").await;
    add_user(&env, "fresh-user", "fresh@example.com").await;
    let pipeline = env.pipeline().await;
    let producer = herald_runtime::kafka::Producer::new(&env.config.kafka, "test").unwrap();
    let now = herald_schemas::now_millis();
    let email = herald_schemas::EmailContent {
        subject: "Flash sale".into(),
        text: Some("Ends soon".into()),
        html: None,
    };
    let request = |user: &str, expires_at| NotificationRequest {
        notification_id: format!("{user}-n"),
        accepted_at: now,
        recipient: herald_schemas::Recipient { user_id: Some(user.into()), ..Default::default() },
        category: "marketing".into(),
        email: Some(email.clone()),
        expires_at: Some(expires_at),
        ..NotificationRequest::default()
    };
    let topic = env.topics().requests();
    for r in [request("late-user", now - 1_000), request("fresh-user", now + 600_000)] {
        let payload = env.codec().encode(&topic, &r).await.unwrap();
        producer.send(&topic, Some(r.partition_key().as_bytes()), &payload, None).await.unwrap();
    }
    // Past the enricher already (e.g. waiting in a retry tier), then stale.
    let message = ChannelMessage {
        notification_id: "stale-message".into(),
        channel: "email".into(),
        target: "stale@example.com".into(),
        route: "default".into(),
        category: "marketing".into(),
        accepted_at: now,
        email: Some(email.clone()),
        expires_at: Some(now - 1),
        ..ChannelMessage::default()
    };
    let channel_topic = env.topics().channel(herald_schemas::Channel::Email);
    let payload = env.codec().encode(&channel_topic, &message).await.unwrap();
    producer.send(&channel_topic, Some(b"stale@example.com"), &payload, None).await.unwrap();

    env.mail.wait_for(WAIT, |m| m.to == ["fresh@example.com"]).await.expect("fresh one sent");
    let ids = ["late-user-n".to_owned(), "stale-message".to_owned()];
    let events: Vec<DeliveryEvent> = events_until_all(&env, &ids, EventKind::Skipped).await;
    for id in &ids {
        let skipped = events
            .iter()
            .find(|e| &e.notification_id == id && e.kind == EventKind::Skipped)
            .unwrap();
        assert_eq!(skipped.reason.as_deref(), Some("expired"), "{id}");
        assert!(
            !events.iter().any(|e| &e.notification_id == id && e.kind == EventKind::Sent),
            "{id} was sent"
        );
    }
    assert!(env.mail.received().iter().all(|m| m.to != ["late@example.com"]));
    assert!(env.mail.received().iter().all(|m| m.to != ["stale@example.com"]));
    pipeline.stop().await;
}
