//! Frequency caps on the real broker: at most N notifications of a category per user and
//! day on a channel, counted once per notification however often its request is delivered.

use crate::support;

use std::collections::BTreeMap;
use std::time::Duration;

use herald_enricher::FrequencyCaps;
use herald_schemas::{DeliveryEvent, EmailContent, EventKind, NotificationRequest, Recipient};
use support::{TestEnv, add_user, events_until_all};

fn newsletter(id: &str) -> NotificationRequest {
    NotificationRequest {
        notification_id: id.into(),
        accepted_at: herald_schemas::now_millis(),
        recipient: Recipient { user_id: Some("reader".into()), ..Recipient::default() },
        category: "marketing".into(),
        email: Some(EmailContent {
            subject: format!("Issue {id}"),
            text: Some("News".into()),
            html: None,
        }),
        ..NotificationRequest::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_cap_skips_the_third_newsletter_and_a_redelivered_request_counts_once() {
    let mut env = TestEnv::start().await;
    env.config.enricher.frequency_caps = FrequencyCaps::new(BTreeMap::from([(
        "marketing".to_owned(),
        BTreeMap::from([("email".to_owned(), 2)]),
    )]));
    add_user(&env, "reader", "reader@example.com").await;
    let pipeline = env.pipeline().await;
    let producer = herald_runtime::kafka::Producer::new(&env.config.kafka, "newsletters").unwrap();
    // A service's producer retrying: n1 arrives twice.
    let topic = env.topics().requests_in(herald_schemas::Lane::Bulk);
    for id in ["n1", "n1", "n2", "n3"] {
        let request = newsletter(id);
        let payload = env.codec().encode(&topic, &request).await.unwrap();
        producer.send(&topic, Some(b"reader"), &payload, None).await.unwrap();
    }

    let ids = ["n2".to_owned(), "n3".to_owned()];
    let mut events: Vec<DeliveryEvent> = events_until_all(&env, &ids[..1], EventKind::Sent).await;
    events.extend(events_until_all(&env, &ids[1..], EventKind::Skipped).await);
    let capped =
        events.iter().find(|e| e.notification_id == "n3" && e.kind == EventKind::Skipped).unwrap();
    assert_eq!(
        (capped.channel.as_deref(), capped.reason.as_deref()),
        (Some("email"), Some("frequency_capped"))
    );
    assert!(!events.iter().any(|e| e.notification_id == "n3" && e.kind == EventKind::Routed));
    env.mail.wait_for(Duration::from_secs(30), |m| m.raw.contains("Issue n2")).await.unwrap();
    let subjects: Vec<String> =
        env.mail.received().iter().filter_map(|m| m.header("Subject")).collect();
    assert_eq!(subjects.iter().filter(|s| *s == "Issue n1").count(), 1, "{subjects:?}");
    assert!(!subjects.contains(&"Issue n3".to_owned()), "{subjects:?}");
    pipeline.stop().await;
}
