//! Offset-based retry on a real broker: transient failures move along the retry tiers and
//! wait for their due time without blocking fresh traffic; exhausted ones are dead-lettered;
//! finished deliveries are never sent again.

use crate::support;

use std::time::Duration;

use herald_runtime::kafka::{Message, Producer, header_str};
use herald_schemas::{Channel, DeliveryEvent, EventKind, headers};
use support::{TestEnv, add_user, email_body};

const WAIT: Duration = Duration::from_secs(40);

fn of(events: &[DeliveryEvent], id: &str) -> Vec<(EventKind, i32)> {
    let moves = |k: &EventKind| !matches!(k, EventKind::Accepted | EventKind::Routed);
    events
        .iter()
        .filter(|e| e.notification_id == id && moves(&e.kind))
        .map(|e| (e.kind, e.attempt))
        .collect()
}

async fn post(
    env: &TestEnv,
    pipeline: &support::RunningPipeline,
    user: &str,
    subject: &str,
) -> String {
    let key = env.api_key().await;
    let (status, body) = pipeline.post(Some(&key), &email_body(user, subject, "body")).await;
    assert_eq!(status, 202, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failures_are_retried_through_the_tiers_until_sent_and_never_before_due() {
    let env = TestEnv::start().await; // tiers: 1 s, 2 s
    add_user(&env, "u1", "flaky@example.com").await;
    env.mail.refuse_times("flaky@example.com", 451, "4.3.0 try again later", Some(2));
    let pipeline = env.pipeline().await;
    let id = post(&env, &pipeline, "u1", "eventually").await;

    env.mail
        .wait_for(WAIT, |m| m.to == ["flaky@example.com"])
        .await
        .expect("sent on the third attempt");
    let attempts = env.mail.attempts("flaky@example.com");
    assert_eq!(attempts.len(), 3, "{attempts:?}");
    assert!(attempts[1] - attempts[0] >= 1_000, "tier 1 waited its 1 s: {attempts:?}");
    assert!(attempts[2] - attempts[1] >= 2_000, "tier 2 waited its 2 s: {attempts:?}");

    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, |e: &[DeliveryEvent]| {
            e.iter().any(|e| e.kind == EventKind::Sent)
        })
        .await;
    let seen = of(&events, &id);
    assert_eq!(seen, [(EventKind::Retrying, 1), (EventKind::Retrying, 2), (EventKind::Sent, 3)]);
    let retrying = events.iter().find(|e| e.kind == EventKind::Retrying).unwrap();
    assert!(retrying.reason.as_deref().unwrap().contains("try again later"));
    assert!(retrying.detail.contains_key("next_attempt_at"));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_reach_the_dlq_with_first_failure_and_origin() {
    let env = TestEnv::start().await;
    add_user(&env, "u2", "down@example.com").await;
    env.mail.refuse("down@example.com", 421, "4.7.0 service not available");
    let pipeline = env.pipeline().await;
    let id = post(&env, &pipeline, "u2", "never").await;

    let dlq = env.read_topic(&env.topics().dlq(), WAIT, |r| !r.is_empty()).await;
    assert_eq!(dlq.len(), 1);
    let dead = &dlq[0];
    let h = |name| header_str(dead, name).map(str::to_owned);
    assert_eq!(h(headers::ERROR_CLASS).as_deref(), Some("retries_exhausted"));
    assert!(
        h(headers::ERROR_REASON).unwrap().contains("after attempt 3"),
        "{:?}",
        h(headers::ERROR_REASON)
    );
    assert!(h(headers::FIRST_FAILURE).unwrap().contains("service not available"));
    assert_eq!(h(headers::ORIGINAL_TOPIC), Some(env.topics().channel(Channel::Email)));
    assert_eq!(h(headers::NOTIFICATION_ID), Some(id.clone()));
    assert_eq!(env.mail.attempts("down@example.com").len(), 3, "one try and two retries");

    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), WAIT, |e: &[DeliveryEvent]| {
            e.iter().any(|e| e.kind == EventKind::DeadLettered)
        })
        .await;
    assert!(of(&events, &id).contains(&(EventKind::DeadLettered, 3)));
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_traffic_keeps_flowing_while_a_retry_tier_waits() {
    let mut env = TestEnv::start().await;
    env.config.dispatch.retry.delays_ms = vec![20_000];
    add_user(&env, "slow", "later@example.com").await;
    add_user(&env, "fast", "now@example.com").await;
    env.mail.refuse_times("later@example.com", 451, "try later", Some(1));
    let pipeline = env.pipeline().await;
    post(&env, &pipeline, "slow", "waits 20 s").await;
    tokio::time::timeout(WAIT, async {
        while env.mail.attempts("later@example.com").is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
    let failed_at = env.mail.attempts("later@example.com")[0];

    post(&env, &pipeline, "fast", "goes now").await;
    let fresh = env.mail.wait_for(Duration::from_secs(15), |m| m.to == ["now@example.com"]).await;
    assert!(fresh.is_some(), "fresh traffic was not held behind the waiting retry");
    assert!(
        herald_schemas::now_millis() < failed_at + 20_000,
        "and it went before the retry was due"
    );
    assert_eq!(env.mail.attempts("later@example.com").len(), 1, "the retry is still waiting");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_record_already_sent_is_not_sent_again() {
    let env = TestEnv::start().await;
    add_user(&env, "u3", "once@example.com").await;
    let pipeline = env.pipeline().await;
    post(&env, &pipeline, "u3", "only once").await;
    env.mail.wait_for(WAIT, |m| m.to == ["once@example.com"]).await.expect("sent");

    // Replay: the same channel record produced again, as a replay or a redelivery would.
    let channel_topic = env.topics().channel(Channel::Email);
    let original = env.read_topic(&channel_topic, WAIT, |r| !r.is_empty()).await.remove(0);
    let producer = Producer::new(&env.config.kafka, "replayer").unwrap();
    producer.send(&channel_topic, original.key(), original.payload().unwrap(), None).await.unwrap();
    let marker = post(&env, &pipeline, "u3", "marker after the replay").await;
    env.mail
        .wait_for(WAIT, |m| m.header("Message-ID").is_some_and(|id| id.contains(&marker)))
        .await
        .expect("later traffic delivered, so the replayed record was handled");
    let once = env
        .mail
        .received()
        .iter()
        .filter(|m| m.header("Subject").as_deref() == Some("only once"))
        .count();
    assert_eq!(once, 1, "the replayed delivery was acknowledged without calling the provider");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_api_shows_the_lifecycle_of_a_retried_notification_to_its_sender_only() {
    let env = TestEnv::start().await;
    add_user(&env, "u4", "twice@example.com").await;
    env.mail.refuse_times("twice@example.com", 451, "greylisted", Some(1));
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let (_, body) = pipeline.post(Some(&key), &email_body("u4", "status", "body")).await;
    let id = body["id"].as_str().unwrap().to_owned();

    let get = |key: String| {
        let url = format!("{}/v1/notifications/{id}", pipeline.api);
        let http = pipeline.http.clone();
        async move {
            let response = http.get(url).bearer_auth(key).send().await.unwrap();
            (response.status().as_u16(), response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let (status, accepted) = get(key.clone()).await;
    assert_eq!(status, 200, "readable right after the 202: {accepted}");
    assert!(accepted["accepted_at"].is_i64());

    let deadline = std::time::Instant::now() + WAIT;
    let body = loop {
        let (_, body) = get(key.clone()).await;
        if body["state"] == "sent" {
            break body;
        }
        assert!(std::time::Instant::now() < deadline, "never sent: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let delivery = &body["deliveries"][0];
    assert_eq!(delivery["channel"], "email");
    assert_eq!(delivery["target"], "twice@example.com");
    assert_eq!(delivery["state"], "sent");
    assert_eq!(delivery["attempt"], 2);
    let kinds: Vec<&str> =
        body["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["accepted", "routed", "retrying", "sent"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let retrying =
        body["events"].as_array().unwrap().iter().find(|e| e["kind"] == "retrying").unwrap();
    assert_eq!(retrying["reason"].as_str().map(|r| r.contains("greylisted")), Some(true));

    let (status, _) = get(env.api_key().await).await;
    assert_eq!(status, 404, "another client cannot read it");
    let (status, _) = get("hrld_nope".into()).await;
    assert_eq!(status, 401);
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_notifications_are_listed_newest_first_in_pages_to_their_sender_only() {
    let env = TestEnv::start().await;
    add_user(&env, "u5", "listed@example.com").await;
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let mut ids = Vec::new();
    for subject in ["first", "second", "third"] {
        let (_, body) = pipeline.post(Some(&key), &email_body("u5", subject, "body")).await;
        ids.push(body["id"].as_str().unwrap().to_owned());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let deadline = std::time::Instant::now() + WAIT;
    let first = loop {
        let (status, page) = pipeline.get(&key, "/v1/users/u5/notifications?limit=2").await;
        assert_eq!(status, 200, "{page}");
        if page["notifications"].as_array().unwrap().iter().all(|n| n["state"] == "sent") {
            break page;
        }
        assert!(std::time::Instant::now() < deadline, "never sent: {page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let listed = |page: &serde_json::Value| -> Vec<String> {
        let notifications = page["notifications"].as_array().unwrap();
        notifications.iter().map(|n| n["id"].as_str().unwrap().to_owned()).collect()
    };
    assert_eq!(listed(&first), [ids[2].clone(), ids[1].clone()], "newest first: {first}");
    assert_eq!(first["notifications"][0]["deliveries"][0]["target"], "listed@example.com");
    let before = first["next_before"].as_i64().expect("a next page");
    let (_, second) =
        pipeline.get(&key, &format!("/v1/users/u5/notifications?limit=2&before={before}")).await;
    assert_eq!(listed(&second), [ids[0].clone()]);
    assert!(second["next_before"].is_null(), "{second}");

    let clients = herald_ingest::ApiClients::open(&env.config.ingest.store_path).unwrap();
    let (_, other) = clients.add("another-service").await.unwrap();
    let (status, theirs) = pipeline.get(&other, "/v1/users/u5/notifications").await;
    assert_eq!(status, 200);
    assert_eq!(theirs["notifications"], serde_json::json!([]), "another client's are not shown");
    let (status, _) = pipeline.get(&key, "/v1/users/u5/notifications?limit=0").await;
    assert_eq!(status, 400);
    pipeline.stop().await;
}
