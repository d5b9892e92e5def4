//! `herald replay`: a window of herald.requests re-driven through the pipeline; the delivery
//! ledger keeps notifications already delivered from being sent again.

use crate::support;

use std::time::{Duration, Instant};

use herald_schemas::{Channel, ChannelMessage, DeliveryEvent, EventKind};
use rdkafka::message::{Headers, Message as _};
use support::{TestEnv, add_user, email_body, herald_output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_window_goes_through_the_pipeline_without_sending_twice() {
    replay_a_window(TestEnv::start().await).await;
}

/// The same with the directory, the ledger and the ingest store on the run's CQL node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_window_with_every_store_on_a_cql_node_goes_through_without_sending_twice() {
    let Some(env) = TestEnv::on_cql().await else { return };
    replay_a_window(env).await;
}

async fn replay_a_window(env: TestEnv) {
    for user in ["r1", "r2"] {
        add_user(&env, user, &format!("{user}@example.com")).await;
    }
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    for user in ["r1", "r2"] {
        let (status, body) = pipeline.post(Some(&key), &email_body(user, "Invoice", "Due")).await;
        assert_eq!(status, 202, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(40);
    while env.mail.received().len() < 2 {
        assert!(Instant::now() < deadline, "first deliveries");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let dry = herald_output(&env, &["replay", "--from", "10m", "--dry-run"]);
    assert!(dry.contains("2 record(s)"), "{dry}");
    let done = herald_output(&env, &["replay", "--from", "10m"]);
    assert!(done.contains("replayed 2 record(s)"), "{done}");

    // The enricher fans the replayed requests out again...
    let topic = env.topics().channel(Channel::Email);
    let replayed =
        env.read_records::<ChannelMessage>(&topic, Duration::from_secs(40), |m| m.len() >= 4).await;
    assert_eq!(replayed.len(), 4, "fanned out again");
    let mut ids: Vec<_> = replayed.into_iter().map(|m| m.notification_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2, "the same two notifications, again");
    // ...and the dispatcher's ledger does not send them a second time.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let per = env.mail.per_recipient();
    assert_eq!((per.get("r1@example.com"), per.get("r2@example.com")), (Some(&1), Some(&1)));
    let requests =
        env.read_topic(&env.topics().requests(), Duration::from_secs(10), |r| r.len() >= 4).await;
    let marked = requests
        .iter()
        .filter(|r| r.headers().is_some_and(|h| h.iter().any(|h| h.key == "herald-replayed-at")))
        .count();
    assert_eq!(marked, 2);

    // The same window again: the first replay's copies are replays themselves and stay out,
    // so the window is not doubled.
    let twice = herald_output(&env, &["replay", "--from", "10m"]);
    assert!(twice.contains("left out 2 record(s)"), "{twice}");
    assert!(twice.contains("replayed 2 record(s)"), "{twice}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forced_resend_by_offsets_delivers_once_more_and_its_events_are_marked_replayed() {
    let env = TestEnv::start().await;
    add_user(&env, "f1", "f1@example.com").await;
    let pipeline = env.pipeline().await;
    let (status, body) =
        pipeline.post(Some(&env.api_key().await), &email_body("f1", "Receipt", "Thanks")).await;
    assert_eq!(status, 202, "{body}");
    env.mail.wait_for(Duration::from_secs(40), |m| m.to == ["f1@example.com"]).await.expect("sent");

    let dry =
        herald_output(&env, &["replay", "--topic", "requests", "--from-offset", "0", "--dry-run"]);
    assert!(dry.contains("1 record(s) of "), "{dry}");
    let done = herald_output(
        &env,
        &["replay", "--topic", "requests", "--from-offset", "0", "--force-resend"],
    );
    assert!(done.contains("replayed 1 record(s)") && done.contains("forced resend"), "{done}");

    let deadline = Instant::now() + Duration::from_secs(40);
    while env.mail.per_recipient().get("f1@example.com") != Some(&2) {
        assert!(Instant::now() < deadline, "delivered again: {:?}", env.mail.per_recipient());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Once more, not once per redelivery: the resend has a ledger entry of its own.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(env.mail.per_recipient().get("f1@example.com"), Some(&2));

    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), Duration::from_secs(20), |e| {
            e.iter().any(|e| e.kind == EventKind::Sent && e.detail.contains_key("resend_id"))
        })
        .await;
    let replayed: Vec<_> = events.iter().filter(|e| e.detail.contains_key("replayed_at")).collect();
    assert!(replayed.iter().any(|e| e.kind == EventKind::Routed), "the enricher's: {replayed:?}");
    assert!(replayed.iter().any(|e| e.kind == EventKind::Sent), "the dispatcher's: {replayed:?}");
    let first = events.iter().filter(|e| e.kind == EventKind::Sent).count();
    assert_eq!(first, 2, "one send before, one forced: {events:?}");
    pipeline.stop().await;
}
