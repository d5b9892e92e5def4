//! `herald groups reset-offsets --to-datetime`: a stopped group re-reads from a point in
//! time; the delivery ledger keeps what was delivered from being sent again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use herald_schemas::{Channel, ChannelMessage};
use support::{TestEnv, add_user, email_body, herald_output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_group_reset_to_a_time_rereads_without_sending_twice() {
    let env = TestEnv::start().await;
    add_user(&env, "g1", "g1@example.com").await;
    let pipeline = env.pipeline().await;
    let (status, body) =
        pipeline.post(Some(&env.api_key()), &email_body("g1", "Hi", "there")).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(40);
    while env.mail.received().is_empty() {
        assert!(Instant::now() < deadline, "first delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pipeline.stop().await;

    let requests = env.topics().requests();
    let args = ["groups", "reset-offsets", "--group", "herald-enricher", "--to-datetime", "10m"];
    let planned = herald_output(&env, &[&args[..], &["--topic", &requests, "--dry-run"]].concat());
    assert!(planned.contains("would move"), "{planned}");
    assert!(planned.lines().any(|l| l.starts_with(&requests) && l.ends_with("\t0")), "{planned}");
    let moved = herald_output(&env, &[&args[..], &["--topic", &requests]].concat());
    assert!(moved.contains("moved"), "{moved}");
    let lag =
        herald_output(&env, &["groups", "lag", "--group", "herald-enricher", "--topic", &requests]);
    assert!(lag.starts_with("total lag 1"), "{lag}");

    let restarted = env.pipeline().await;
    let topic = env.topics().channel(Channel::Email);
    let fanned =
        env.read_records::<ChannelMessage>(&topic, Duration::from_secs(40), |m| m.len() >= 2).await;
    assert_eq!(fanned.len(), 2, "the request was read again");
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(env.mail.per_recipient().get("g1@example.com"), Some(&1), "but not sent again");
    restarted.stop().await;
}
