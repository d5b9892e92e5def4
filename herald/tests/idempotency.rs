//! `Idempotency-Key` at the send API: a retried request is answered as the first was and
//! produces nothing, across a restart and across instances sharing the ingest store; the same
//! key with another body is refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use herald_schemas::NotificationRequest;
use support::{TestEnv, add_user, email_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_with_the_same_idempotency_key_is_accepted_and_sent_once() {
    let env = TestEnv::start().await;
    add_user(&env, "idem", "idem@example.com").await;
    let key = env.api_key().await;
    let body = email_body("idem", "Your receipt", "Thanks for your order.");
    let idempotency = [("Idempotency-Key", "order-1042-receipt")];

    let pipeline = env.pipeline().await;
    let (status, first, headers) = pipeline.post_with(&key, &body, &idempotency).await;
    assert_eq!(status, 202, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, again, headers) = pipeline.post_with(&key, &body, &idempotency).await;
    assert_eq!((status, &again), (202, &first), "the first answer, again");
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    let other = email_body("idem", "Something else", "A different body.");
    let (status, refused, _) = pipeline.post_with(&key, &other, &idempotency).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"], "idempotency_key_reused");
    let (status, _, _) = pipeline.post_with(&key, &body, &[("Idempotency-Key", "has space")]).await;
    assert_eq!(status, 400);
    pipeline.stop().await;

    let restarted = env.pipeline().await;
    let (status, after_restart, _) = restarted.post_with(&key, &body, &idempotency).await;
    assert_eq!((status, &after_restart), (202, &first), "remembered across a restart");

    let id = first["id"].as_str().unwrap().to_owned();
    let requests = env
        .read_records::<NotificationRequest>(&env.topics().requests(), Duration::from_secs(10), {
            let id = id.clone();
            move |r: &[NotificationRequest]| r.iter().any(|r| r.notification_id == id)
        })
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    while !env.mail.per_recipient().contains_key("idem@example.com") {
        assert!(std::time::Instant::now() < deadline, "never delivered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(requests.iter().filter(|r| r.notification_id == id).count(), 1, "produced once");
    assert_eq!(env.mail.per_recipient().get("idem@example.com"), Some(&1), "sent once");
    restarted.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_instances_sharing_a_store_answer_one_idempotency_key_with_one_notification() {
    send_one_key_to_two_instances(TestEnv::start().await).await;
}

/// The same with every store on the run's CQL node: the key is claimed by a lightweight
/// transaction there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingest_instances_sharing_a_cql_store_answer_one_idempotency_key_with_one_notification()
{
    let Some(env) = TestEnv::on_cql().await else { return };
    send_one_key_to_two_instances(env).await;
}

async fn send_one_key_to_two_instances(env: TestEnv) {
    add_user(&env, "twice", "twice@example.com").await;
    let key = env.api_key().await;
    let body = email_body("twice", "Your ticket", "Row 12, seat 4.");
    let idempotency = [("Idempotency-Key", "ticket-77")];
    let (first, second) = tokio::join!(env.pipeline(), env.pipeline());

    // The client's retry reaches the other instance while the first may still be producing.
    let ((status_a, answer_a, _), (status_b, answer_b, _)) = tokio::join!(
        first.post_with(&key, &body, &idempotency),
        second.post_with(&key, &body, &idempotency)
    );
    let statuses = [status_a, status_b];
    assert!(statuses.contains(&202), "{answer_a} {answer_b}");
    assert!(statuses.iter().all(|s| [202, 409].contains(s)), "{answer_a} {answer_b}");
    let original = if status_a == 202 { answer_a } else { answer_b };
    for instance in [&first, &second] {
        let (status, again, headers) = instance.post_with(&key, &body, &idempotency).await;
        assert_eq!((status, &again), (202, &original), "the first answer, from either");
        assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    }

    let delivered = env.mail.wait_for(Duration::from_secs(40), |m| m.to == ["twice@example.com"]);
    delivered.await.expect("never delivered");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let everything = |_: &[NotificationRequest]| false;
    let requests = env
        .read_records::<NotificationRequest>(
            &env.topics().requests(),
            Duration::from_secs(3),
            everything,
        )
        .await;
    let id = original["id"].as_str().unwrap();
    assert_eq!(requests.len(), 1, "one request produced for the key");
    assert_eq!(requests[0].notification_id, id);
    assert_eq!(env.mail.per_recipient().get("twice@example.com"), Some(&1), "sent once");
    tokio::join!(first.stop(), second.stop());
}
