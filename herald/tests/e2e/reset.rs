//! `herald groups` as operators meet them on a live Herald: describe a running group; lag
//! of every partition a group reads; reset-offsets --to-datetime: a stopped group re-reads
//! from a point in time (the delivery ledger keeps what was delivered from being sent
//! again), a running one is refused, and groups and topics are named short or in full.

use crate::support;

use std::time::{Duration, Instant};

use herald_schemas::{Channel, ChannelMessage};
use herald_testkit::mail_sink::ReceivedMail;
use support::{TestEnv, add_user, email_body, herald_command, herald_output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_group_reset_to_a_time_rereads_without_sending_twice() {
    let env = TestEnv::start().await;
    add_user(&env, "g1", "g1@example.com").await;
    let pipeline = env.pipeline().await;
    let (status, body) =
        pipeline.post(Some(&env.api_key().await), &email_body("g1", "Hi", "there")).await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(40);
    while env.mail.received().is_empty() {
        assert!(Instant::now() < deadline, "first delivery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pipeline.stop().await;

    let requests = env.topics().requests();
    let enricher = env.group("enricher");
    // --force: on Tansu, which does not describe groups, the operator vouches they stopped.
    let args = ["groups", "reset-offsets", "--group", &enricher, "--to-datetime", "10m", "--force"];
    let planned = herald_output(&env, &[&args[..], &["--topic", "requests", "--dry-run"]].concat());
    assert!(planned.contains("would move"), "{planned}");
    assert!(planned.lines().any(|l| l.starts_with(&requests) && l.ends_with("\t0")), "{planned}");
    let moved = herald_output(&env, &[&args[..], &["--topic", "requests"]].concat());
    assert!(moved.contains("moved"), "{moved}");
    let lag = herald_output(&env, &["groups", "lag", "--group", &enricher, "--topic", &requests]);
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

/// Tansu 0.6.0 closes the connection on DescribeGroups: this runs on Apache Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_describe_names_the_members_of_a_running_group_and_their_partitions() {
    let Some(env) = TestEnv::on_kafka().await else { return };
    add_user(&env, "d1", "d1@example.com").await;
    let pipeline = env.pipeline().await;
    let (status, body) =
        pipeline.post(Some(&env.api_key().await), &email_body("d1", "Hi", "There")).await;
    assert_eq!(status, 202, "{body}");
    let subject_is =
        |s: &'static str| move |m: &ReceivedMail| m.header("Subject").as_deref() == Some(s);
    env.mail.wait_for(Duration::from_secs(40), subject_is("Hi")).await.expect("the group runs");
    let group = env.group("dispatch-email");
    let described = herald_output(&env, &["groups", "describe", "--group", &group]);
    assert!(described.contains(&format!("group {group}: Stable")), "{described}");
    assert!(described.contains("1 member(s)"), "{described}");
    let email = env.topics().channel(Channel::Email);
    let all: Vec<String> = (0..support::PARTITIONS).map(|p| p.to_string()).collect();
    let owned = format!("{email}[{}]", all.join(","));
    assert!(described.contains(&owned), "its one member owns every partition: {described}");
    // Asking does not disturb the group.
    let (status, body) =
        pipeline.post(Some(&env.api_key().await), &email_body("d1", "Again", "Hi")).await;
    assert_eq!(status, 202, "{body}");
    let again = env.mail.wait_for(Duration::from_secs(40), subject_is("Again")).await;
    again.expect("still delivering after describe");

    let unknown =
        herald_command(&env).args(["groups", "describe", "--group", "nobody"]).output().unwrap();
    assert!(!unknown.status.success());
    let error = String::from_utf8_lossy(&unknown.stderr);
    assert!(error.contains("nobody"), "{error}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_of_a_running_group_is_refused_saying_how_to_stop_it_and_moves_nothing() {
    let env = TestEnv::start().await;
    add_user(&env, "live", "live@example.com").await;
    let pipeline = env.pipeline().await;
    let (status, body) =
        pipeline.post(Some(&env.api_key().await), &email_body("live", "Hi", "there")).await;
    assert_eq!(status, 202, "{body}");
    let subject_is = |m: &ReceivedMail| m.header("Subject").as_deref() == Some("Hi");
    env.mail.wait_for(Duration::from_secs(40), subject_is).await.expect("delivered");
    support::wait_until_caught_up(&env, "enricher", Duration::from_secs(20)).await;

    let reset = ["groups", "reset-offsets", "--group", "enricher", "--to-datetime", "1h"];
    let output = herald_command(&env).args(reset).output().unwrap();
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "a running group is not moved: {error}");
    assert!(error.contains("Stop every `herald enrich` process"), "says how: {error}");
    if env.broker.is_kafka() {
        assert!(error.contains("running member(s)"), "Kafka names its members: {error}");
    } else {
        assert!(error.contains("--force"), "Tansu cannot tell, and says so: {error}");
    }
    let lag = herald_output(&env, &["groups", "lag", "--group", "enricher"]);
    assert!(lag.starts_with("total lag 0"), "nothing moved: {lag}");
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_that_never_committed_shows_its_backlog_and_is_reset_on_its_own_topics() {
    let env = TestEnv::start().await;
    // Two requests no enricher has read: the group has committed nothing.
    let file = env.dir.path().join("requests.jsonl");
    let line = r#"{"recipient": {"email": "waiting@example.com"}, "email": {"subject": "Wait", "text": "."}}"#;
    std::fs::write(&file, format!("{line}\n{line}\n")).unwrap();
    herald_output(&env, &["produce", "--file", file.to_str().unwrap()]);

    let lag = herald_output(&env, &["groups", "lag", "--group", "enricher"]);
    assert!(lag.starts_with("total lag 2"), "counted from the log start: {lag}");
    let rows: Vec<&str> = lag.lines().filter(|l| l.starts_with(&env.topics().requests())).collect();
    assert_eq!(
        rows.len(),
        support::PARTITIONS as usize,
        "every partition, committed or not: {lag}"
    );
    assert!(rows.iter().all(|r| r.split('\t').nth(2) == Some("-")), "{lag}");

    let reset =
        ["groups", "reset-offsets", "--group", "enricher", "--to-datetime", "1h", "--force"];
    let moved = herald_output(&env, &reset);
    assert!(moved.starts_with(&format!("moved {} partition(s)", support::PARTITIONS)), "{moved}");
    let lag = herald_output(&env, &["groups", "lag", "--group", "enricher"]);
    assert!(lag.starts_with("total lag 2"), "from an hour ago: both again: {lag}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misspelt_group_is_refused_naming_herald_groups_instead_of_reporting_no_lag() {
    let env = TestEnv::start().await;
    let typo = format!("{}emial", env.group("dispatch-"));
    for args in [
        vec!["groups", "lag", "--group", typo.as_str()],
        vec!["groups", "reset-offsets", "--group", typo.as_str(), "--to-datetime", "1h"],
    ] {
        let output = herald_command(&env).args(&args).output().unwrap();
        let error = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?}");
        assert!(error.contains("is not one of Herald's consumer groups"), "{error}");
        assert!(error.contains(&env.group("dispatch-email")), "names the known ones: {error}");
    }
}
