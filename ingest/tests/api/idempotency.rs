//! `Idempotency-Key`: a retried request is answered as the first was and produces nothing,
//! across a restart and across instances sharing the ingest store; the same key with another
//! body is refused.

use std::time::{Duration, Instant};

use crate::support::{ApiEnv, email_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_request_with_the_same_idempotency_key_is_answered_as_the_first_and_produced_once()
 {
    let env = ApiEnv::start().await;
    let key = env.api_key().await;
    let key = Some(key.as_str());
    let body = email_body("idem", "Your receipt", "Thanks for your order.");
    let idempotency = [("Idempotency-Key", "order-1042-receipt")];

    let api = env.serve().await;
    let (status, first, headers) = api.post_with(key, &body, &idempotency).await;
    assert_eq!(status, 202, "{first}");
    assert!(headers.get("idempotent-replayed").is_none());
    let (status, again, headers) = api.post_with(key, &body, &idempotency).await;
    assert_eq!((status, &again), (202, &first), "the first answer, again");
    assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    let other = email_body("idem", "Something else", "A different body.");
    let (status, refused, _) = api.post_with(key, &other, &idempotency).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"], "idempotency_key_reused");
    let (status, _, _) = api.post_with(key, &body, &[("Idempotency-Key", "has space")]).await;
    assert_eq!(status, 400);
    api.stop().await;

    let restarted = env.serve().await;
    let (status, after_restart, _) = restarted.post_with(key, &body, &idempotency).await;
    assert_eq!((status, &after_restart), (202, &first), "remembered across a restart");
    restarted.stop().await;

    let everything = |_: &[_]| false;
    let requests = env.requests(Duration::from_secs(3), everything).await;
    assert_eq!(requests.len(), 1, "produced once: {requests:?}");
    assert_eq!(requests[0].notification_id, first["id"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_a_store_answer_one_idempotency_key_with_one_notification() {
    Box::pin(send_one_key_to_two_instances(ApiEnv::start().await)).await;
}

/// The same with the store on the run's CQL node: the key is claimed by a lightweight
/// transaction there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_a_cql_store_answer_one_idempotency_key_with_one_notification() {
    let Some(env) = ApiEnv::on_cql().await else { return };
    Box::pin(send_one_key_to_two_instances(env)).await;
}

async fn send_one_key_to_two_instances(env: ApiEnv) {
    let key = env.api_key().await;
    let key = Some(key.as_str());
    let body = email_body("twice", "Your ticket", "Row 12, seat 4.");
    let idempotency = [("Idempotency-Key", "ticket-77")];
    let (first, second) = tokio::join!(env.serve(), env.serve());

    // The client's retry reaches the other instance while the first may still be producing.
    let ((status_a, answer_a, _), (status_b, answer_b, _)) = tokio::join!(
        first.post_with(key, &body, &idempotency),
        second.post_with(key, &body, &idempotency)
    );
    let statuses = [status_a, status_b];
    assert!(statuses.contains(&202), "{answer_a} {answer_b}");
    assert!(statuses.iter().all(|s| [202, 409].contains(s)), "{answer_a} {answer_b}");
    let original = if status_a == 202 { answer_a } else { answer_b };
    for instance in [&first, &second] {
        let (status, again, headers) = instance.post_with(key, &body, &idempotency).await;
        assert_eq!((status, &again), (202, &original), "the first answer, from either");
        assert_eq!(headers.get("idempotent-replayed").unwrap(), "true");
    }
    tokio::join!(first.stop(), second.stop());

    let everything = |_: &[_]| false;
    let requests = env.requests(Duration::from_secs(3), everything).await;
    assert_eq!(requests.len(), 1, "one request produced for the key: {requests:?}");
    assert_eq!(requests[0].notification_id, original["id"].as_str().unwrap());
}

/// A broker that stops answering (its process frozen, as in an outage): a send is answered
/// 503 with `Retry-After` once `ingest.send_wait_ms` has passed, not when the Kafka client
/// gives up minutes later; retried with its `Idempotency-Key` once the broker is back, it is
/// accepted at once as the same notification, whether or not the first attempt's record
/// reached the broker after all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_while_the_broker_is_frozen_gets_503_with_retry_after_in_the_bounded_wait_and_its_retry_is_the_same_notification()
 {
    let mut env = ApiEnv::on_own_broker().await;
    env.config.send_wait_ms = 2_000;
    let key = env.api_key().await;
    let key = Some(key.as_str());
    let api = env.serve().await;
    let warm = email_body("outage-0", "Before", "The producer is connected.");
    assert_eq!(api.post_with(key, &warm, &[]).await.0, 202);

    let broker = env.broker.pids()[0];
    let signal = |name: &str| herald_testkit::signal(broker, name).unwrap();
    let body = email_body("outage-1", "Your sign-in code", "123456");
    let idempotency = [("Idempotency-Key", "sign-in-code-1")];
    signal("-STOP");
    let asked = Instant::now();
    let (status, refused, headers) = api.post_with(key, &body, &idempotency).await;
    let waited = asked.elapsed();
    signal("-CONT");
    assert_eq!(status, 503, "{refused}");
    assert_eq!(refused["error"], "unavailable");
    assert!(refused["message"].as_str().unwrap().contains("within 2000 ms"), "{refused}");
    assert_eq!(headers.get("retry-after").unwrap(), "2");
    assert!(
        waited >= Duration::from_secs(2) && waited < Duration::from_secs(8),
        "answered after {waited:?}, the wait being 2 s"
    );

    let (status, accepted, _) = api.post_with(key, &body, &idempotency).await;
    assert_eq!(status, 202, "the retry is not held back by the first attempt's claim: {accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    api.stop().await;
    let produced = env.requests(Duration::from_secs(5), |_| false).await;
    let attempts: Vec<&str> = produced
        .iter()
        .filter(|r| r.recipient.user_id.as_deref() == Some("outage-1"))
        .map(|r| r.notification_id.as_str())
        .collect();
    assert!(!attempts.is_empty() && attempts.iter().all(|n| *n == id), "{attempts:?} vs {id}");
}
