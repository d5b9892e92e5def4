//! End to end on a real broker: the send API, the enricher and the email dispatcher against
//! a real SMTP server.

use crate::support;

use herald_enricher::Directory as _;
use std::time::Duration;

use herald_runtime::kafka::{Message, header_str};
use herald_schemas::{DeliveryEvent, EventKind, NotificationRequest, headers};
use support::{TestEnv, add_user, email_body};

const WAIT: Duration = Duration::from_secs(30);

/// What the enricher and dispatchers said about `id` (the API's `accepted` left out).
fn kinds(events: &[DeliveryEvent], id: &str) -> Vec<(EventKind, Option<String>)> {
    events
        .iter()
        .filter(|e| e.notification_id == id && e.kind != EventKind::Accepted)
        .map(|e| (e.kind, e.reason.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_email_reaches_the_smtp_server_with_recipient_subject_and_body() {
    let env = TestEnv::start().await;
    add_user(&env, "123456", "ada@example.com").await;
    let key = env.api_key().await;
    let pipeline = env.pipeline().await;

    let (status, body) = pipeline
        .post(Some(&key), &email_body("123456", "Your receipt", "Thanks for the order."))
        .await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    let mail =
        env.mail.wait_for(WAIT, |m| m.to == ["ada@example.com"]).await.expect("mail arrives");
    assert_eq!(mail.header("Subject").as_deref(), Some("Your receipt"));
    assert_eq!(mail.header("From").as_deref(), Some("noreply@example.com"));
    assert!(mail.raw.contains("Thanks for the order."), "{}", mail.raw);
    assert!(
        mail.header("Message-ID").unwrap().contains(&id),
        "Message-ID derives from the notification id"
    );

    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, {
            let id = id.clone();
            move |e: &[DeliveryEvent]| {
                e.iter().any(|e| e.notification_id == id && e.kind == EventKind::Sent)
            }
        })
        .await;
    let seen = kinds(&events, &id);
    assert!(seen.contains(&(EventKind::Routed, None)), "{seen:?}");
    assert!(seen.contains(&(EventKind::Sent, None)), "{seen:?}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_user_gets_a_skipped_event_and_the_pipeline_keeps_delivering() {
    let env = TestEnv::start().await;
    add_user(&env, "42", "known@example.com").await;
    let key = env.api_key().await;
    let pipeline = env.pipeline().await;

    let (status, body) = pipeline.post(Some(&key), &email_body("nobody-here", "s", "t")).await;
    assert_eq!(status, 202, "{body}");
    let unknown_id = body["id"].as_str().unwrap().to_owned();
    let (status, _) = pipeline.post(Some(&key), &email_body("42", "after", "still works")).await;
    assert_eq!(status, 202);

    env.mail
        .wait_for(WAIT, |m| m.to == ["known@example.com"])
        .await
        .expect("the next request is delivered");
    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, {
            let id = unknown_id.clone();
            move |e| e.iter().any(|e| e.notification_id == id && e.kind == EventKind::Skipped)
        })
        .await;
    assert_eq!(
        kinds(&events, &unknown_id),
        vec![(EventKind::Skipped, Some("unknown_user".into()))]
    );
    assert_eq!(env.mail.received().len(), 1, "nothing was sent for the unknown user");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opted_out_channel_is_skipped_with_an_event_and_no_mail() {
    let env = TestEnv::start().await;
    add_user(&env, "7", "grace@example.com").await;
    env.directory()
        .await
        .set_preference(
            "7",
            herald_enricher::Preference {
                category: "marketing".into(),
                channel: "email".into(),
                opted_in: false,
            },
        )
        .await
        .unwrap();
    let key = env.api_key().await;
    let pipeline = env.pipeline().await;

    let mut body: serde_json::Value =
        serde_json::from_str(&email_body("7", "Sale!", "50% off")).unwrap();
    body["category"] = "marketing".into();
    let (_, marketing) = pipeline.post(Some(&key), &body.to_string()).await;
    let (_, receipt) = pipeline
        .post(Some(&key), &email_body("7", "Receipt", "transactional still goes out"))
        .await;

    env.mail
        .wait_for(WAIT, |m| m.header("Subject").as_deref() == Some("Receipt"))
        .await
        .expect("receipt delivered");
    let marketing_id = marketing["id"].as_str().unwrap().to_owned();
    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, {
            let id = marketing_id.clone();
            move |e| e.iter().any(|e| e.notification_id == id && e.kind == EventKind::Skipped)
        })
        .await;
    assert_eq!(kinds(&events, &marketing_id), vec![(EventKind::Skipped, Some("opted_out".into()))]);
    assert!(env.mail.received().iter().all(|m| m.header("Subject").as_deref() != Some("Sale!")));
    assert!(receipt["id"].is_string());
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_request_goes_to_the_dlq_with_reason_and_the_partition_moves_on() {
    let env = TestEnv::start().await;
    add_user(&env, "99", "after-poison@example.com").await;
    let key = env.api_key().await;
    let producer = herald_runtime::kafka::Producer::new(&env.config.kafka, "poisoner").unwrap();
    // Same key as the good request that follows: same partition, behind the poison.
    producer
        .send(&env.topics().requests(), Some(b"99"), b"{\"not\": \"avro\"}", None)
        .await
        .unwrap();
    let pipeline = env.pipeline().await;
    let (status, _) = pipeline.post(Some(&key), &email_body("99", "after poison", "flows")).await;
    assert_eq!(status, 202);

    env.mail
        .wait_for(WAIT, |m| m.to == ["after-poison@example.com"])
        .await
        .expect("partition moved on");
    let dlq = env.read_topic(&env.topics().dlq(), WAIT, |r| !r.is_empty()).await;
    assert_eq!(dlq.len(), 1);
    let dead = &dlq[0];
    assert_eq!(dead.payload(), Some(&b"{\"not\": \"avro\"}"[..]), "original bytes kept");
    assert_eq!(dead.key(), Some(&b"99"[..]));
    assert_eq!(header_str(dead, headers::ERROR_CLASS), Some("poison"));
    assert_eq!(header_str(dead, headers::ORIGINAL_TOPIC), Some(env.topics().requests().as_str()));
    assert_eq!(header_str(dead, headers::FAILED_GROUP), Some(env.group("enricher").as_str()));
    assert!(header_str(dead, headers::ERROR_REASON).unwrap().contains("not a decodable"));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smtp_permanent_rejection_becomes_a_failed_event_and_is_not_resent() {
    let env = TestEnv::start().await;
    add_user(&env, "5", "bounce@example.com").await;
    env.mail.refuse("bounce@example.com", 550, "5.1.1 no such user");
    let key = env.api_key().await;
    let pipeline = env.pipeline().await;
    let (_, body) = pipeline.post(Some(&key), &email_body("5", "s", "t")).await;
    let id = body["id"].as_str().unwrap().to_owned();

    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, {
            let id = id.clone();
            move |e| e.iter().any(|e| e.notification_id == id && e.kind == EventKind::Failed)
        })
        .await;
    let failed = events
        .iter()
        .find(|e| e.notification_id == id && e.kind == EventKind::Failed)
        .expect("failed event");
    assert!(failed.reason.as_deref().unwrap().contains("no such user"), "{failed:?}");
    assert_eq!(failed.provider.as_deref(), Some("smtp"));
    let dlq = env.read_topic(&env.topics().dlq(), Duration::from_secs(2), |r| !r.is_empty()).await;
    assert!(dlq.is_empty(), "a permanent failure is an outcome, not a dead letter");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_produced_directly_by_a_service_is_delivered() {
    let env = TestEnv::start().await;
    add_user(&env, "svc-user", "direct@example.com").await;
    let pipeline = env.pipeline().await;

    // What a service does without the HTTP API: Confluent-framed Avro keyed by user id.
    let request = NotificationRequest {
        notification_id: uuid::Uuid::now_v7().to_string(),
        accepted_at: herald_schemas::now_millis(),
        client_id: Some("orders-service".into()),
        recipient: herald_schemas::Recipient {
            user_id: Some("svc-user".into()),
            ..Default::default()
        },
        channels: vec!["email".into()],
        category: "transactional".into(),
        from: None,
        email: Some(herald_schemas::EmailContent {
            subject: "Shipped".into(),
            text: Some("Your parcel is on its way.".into()),
            html: Some("<p>Your parcel is on its way.</p>".into()),
        }),
        sms: None,
        push: None,
        metadata: Default::default(),
        ..NotificationRequest::default()
    };
    let topic = env.topics().requests();
    let payload = env.codec().encode(&topic, &request).await.unwrap();
    let producer =
        herald_runtime::kafka::Producer::new(&env.config.kafka, "orders-service").unwrap();
    producer.send(&topic, Some(request.partition_key().as_bytes()), &payload, None).await.unwrap();

    let mail =
        env.mail.wait_for(WAIT, |m| m.to == ["direct@example.com"]).await.expect("delivered");
    assert!(mail.header("Content-Type").unwrap().contains("multipart/alternative"), "{}", mail.raw);
    assert!(
        mail.header("From").unwrap().contains("noreply@herald.localhost"),
        "default sender used"
    );
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_device_token_reported_on_directory_updates_is_no_longer_targeted() {
    use herald_enricher::directory::Directory;
    use herald_enricher::{Device, Platform};

    let env = TestEnv::start().await;
    add_user(&env, "phone-user", "p@example.com").await;
    let directory = env.directory().await;
    let dead_token = "de".repeat(32);
    for (id, platform, token) in [
        ("iphone", Platform::Ios, dead_token.as_str()),
        ("pixel", Platform::Android, "live-fcm-token"),
    ] {
        let device = Device {
            device_id: id.into(),
            platform,
            token: token.into(),
            app_id: None,
            active: true,
        };
        directory.upsert_device("phone-user", device).await.unwrap();
    }
    let key = env.api_key().await;
    let pipeline = env.pipeline().await;

    // What a push dispatcher reports when the provider says the token is gone.
    let mut dead = DeliveryEvent::new("earlier-notification", EventKind::Failed);
    dead.channel = Some("ios".into());
    dead.target = Some(dead_token.clone());
    dead.detail.insert("dead_target".into(), "true".into());
    let topic = env.topics().directory_updates();
    let payload = env.codec().encode(&topic, &dead).await.unwrap();
    let producer =
        herald_runtime::kafka::Producer::new(&env.config.kafka, "push-dispatcher").unwrap();
    producer.send(&topic, Some(b"earlier-notification"), &payload, None).await.unwrap();

    let deadline = std::time::Instant::now() + WAIT;
    while directory
        .devices("phone-user")
        .await
        .unwrap()
        .iter()
        .any(|d| d.token == dead_token && d.active)
    {
        assert!(std::time::Instant::now() < deadline, "device not deactivated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let body = r#"{"to":[{"user_id":"phone-user"}],"push":{"title":"Hi","body":"there"}}"#;
    let (status, body) = pipeline.post(Some(&key), body).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, {
            let id = id.clone();
            move |e: &[DeliveryEvent]| {
                e.iter().any(|e| e.notification_id == id && e.kind == EventKind::Routed)
            }
        })
        .await;
    let routed: Vec<_> = events
        .iter()
        .filter(|e| e.notification_id == id && e.kind == EventKind::Routed)
        .map(|e| (e.channel.clone().unwrap(), e.target.clone().unwrap()))
        .collect();
    assert_eq!(routed, [("android".to_owned(), "live-fcm-token".to_owned())]);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_describes_the_send_routes() {
    let env = TestEnv::start().await;
    let pipeline = env.pipeline().await;
    let response =
        pipeline.http.get(format!("{}/openapi.json", pipeline.api)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let doc: serde_json::Value = response.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    assert!(doc["paths"]["/v1/notifications"]["post"].is_object());
    assert!(doc["paths"]["/v1/notifications/{id}"]["get"].is_object());
    assert!(doc["components"]["schemas"]["SendBody"]["properties"]["template_id"].is_object());
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_end_to_end_latency_produced_records_and_enricher_outcomes_are_exported() {
    let mut env = TestEnv::start().await;
    env.config.kafka.consumer.statistics_interval_ms = 500;
    add_user(&env, "measured", "measured@example.com").await;
    let pipeline = env.pipeline().await;
    let (status, _) = pipeline
        .post(Some(&env.api_key().await), &email_body("measured", "Measured", "hello"))
        .await;
    assert_eq!(status, 202);
    env.mail.wait_for(WAIT, |m| m.to == ["measured@example.com"]).await.expect("delivered");

    let channel_topic = env.topics().channel(herald_schemas::Channel::Email);
    let lag_series = format!(
        "herald_consumer_lag{{group=\"{}\",partition=\"0\",topic=\"{channel_topic}\"}}",
        env.group("dispatch-email")
    );
    let deadline = std::time::Instant::now() + WAIT;
    let text = loop {
        let text = herald_runtime::metrics::render();
        if text.lines().any(|l| l.starts_with(&lag_series)) {
            break text;
        }
        assert!(std::time::Instant::now() < deadline, "no {lag_series} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let lag: i64 = text
        .lines()
        .find_map(|l| l.strip_prefix(&lag_series))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    assert!(lag >= 0, "{lag}");
    let e2e = text
        .lines()
        .find(|l| {
            l.starts_with("herald_end_to_end_seconds_count{channel=\"email\",outcome=\"sent\"}")
        })
        .unwrap_or_else(|| panic!("no end-to-end histogram in:\n{text}"));
    assert!(!e2e.ends_with(" 0"), "{e2e}");
    let produced =
        format!("herald_producer_records_total{{outcome=\"acked\",topic=\"{channel_topic}\"}}");
    assert!(text.lines().any(|l| l.starts_with(&produced)), "no {produced} in:\n{text}");
    let routed = "herald_enricher_outcomes_total{channel=\"email\",outcome=\"routed\"}";
    assert!(text.lines().any(|l| l.starts_with(routed)), "no {routed} in:\n{text}");
    pipeline.stop().await;
}

/// A series born at its first observation reads to Prometheus as starting from that value:
/// `rate()` over the first burst would be zero and a p99 panel empty. Every role's series
/// exist at zero before the first request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_roles_series_exist_at_zero_before_the_first_request() {
    let env = TestEnv::start().await;
    let pipeline = env.pipeline().await;
    let enricher = env.group("enricher");
    let zero = [
        "herald_end_to_end_seconds_count{channel=\"email\",outcome=\"sent\"} 0".to_owned(),
        "herald_end_to_end_seconds_count{channel=\"email\",outcome=\"failed\"} 0".to_owned(),
        "herald_deliveries_total{channel=\"email\",outcome=\"sent\",provider=\"smtp\"} 0"
            .to_owned(),
        "herald_enricher_outcomes_total{channel=\"sms\",outcome=\"opted_out\"} 0".to_owned(),
        format!("herald_consumer_handled_total{{group=\"{enricher}\",outcome=\"ok\"}} 0"),
        format!("herald_dead_letters_total{{class=\"poison\",group=\"{enricher}\"}} 0"),
    ];
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = herald_runtime::metrics::render();
        let missing: Vec<&String> =
            zero.iter().filter(|s| !text.lines().any(|l| l == *s)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "missing {missing:?} in:\n{text}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    pipeline.stop().await;
}
