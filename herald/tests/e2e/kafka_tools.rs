//! Kafka's own tools as the outside judge of Herald's consumer groups: Kafka's consumer-group
//! tool lists them with the committed offsets and lag `herald groups lag` reports, and an
//! offset reset made with it is honoured by Herald, whose delivery ledger keeps the re-read
//! from sending twice.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use support::{TestEnv, add_user, email_body, herald_output};

/// Kafka's consumer-group tool (`kafka-consumer-groups.sh`) on the run's cluster.
fn consumer_groups(env: &TestEnv, args: &[&str]) -> String {
    let dir = std::env::var("HERALD_TEST_KAFKA_DIR").ok().map(std::path::PathBuf::from);
    let servers = env.config.kafka.bootstrap_servers.clone();
    let all = [&["--bootstrap-server", servers.as_str()], args].concat();
    let output = herald_testkit::kafka_tool(dir.as_deref(), "consumer-groups", &all).unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kafka-consumer-groups {args:?}: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// (committed, log end, lag) per partition of `topic`, from Kafka's `--describe` table.
fn kafka_positions(described: &str, topic: &str) -> BTreeMap<i32, (Option<i64>, i64, i64)> {
    described
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cells| cells.len() >= 6 && cells[1] == topic)
        .map(|cells| {
            let number = |s: &str| s.parse::<i64>().ok();
            let partition = cells[2].parse().unwrap();
            (
                partition,
                (number(cells[3]), number(cells[4]).unwrap(), number(cells[5]).unwrap_or(0)),
            )
        })
        .collect()
}

/// (committed, log end, lag) per partition of `topic`, from `herald groups lag`.
fn herald_positions(
    env: &TestEnv,
    group: &str,
    topic: &str,
) -> BTreeMap<i32, (Option<i64>, i64, i64)> {
    let table = herald_output(env, &["groups", "lag", "--group", group, "--topic", topic]);
    table
        .lines()
        .skip(2)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|cells| cells.len() == 6 && cells[0] == topic)
        .map(|cells| {
            let partition = cells[1].parse().unwrap();
            (
                partition,
                (cells[2].parse().ok(), cells[4].parse().unwrap(), cells[5].parse().unwrap()),
            )
        })
        .collect()
}

async fn deliver(env: &TestEnv, users: &[&str]) {
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    for user in users {
        let (status, body) =
            pipeline.post(Some(&key), &email_body(user, "Judged", "by Kafka")).await;
        assert_eq!(status, 202, "{body}");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while env.mail.received().len() < users.len() {
        assert!(Instant::now() < deadline, "delivered: {:?}", env.mail.per_recipient());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pipeline.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkas_consumer_group_tool_lists_herald_groups_with_the_offsets_and_lag_herald_reports() {
    let Some(env) = TestEnv::on_kafka().await else { return };
    for user in ["k1", "k2", "k3"] {
        add_user(&env, user, &format!("{user}@example.com")).await;
    }
    deliver(&env, &["k1", "k2", "k3"]).await;
    // Two more requests for k1 while nothing reads them: the enricher's group lags by two
    // on k1's partition.
    let file = env.dir.path().join("more.jsonl");
    let line = |n: u32| {
        format!(
            r#"{{"recipient": {{"user_id": "k1"}}, "email": {{"subject": "Late", "text": "{n}"}}}}"#
        )
    };
    std::fs::write(&file, format!("{}\n{}\n", line(1), line(2))).unwrap();
    herald_output(&env, &["produce", "--file", file.to_str().unwrap()]);

    let listed = consumer_groups(&env, &["--list"]);
    for name in ["enricher", "dispatch-email", "status-sink"] {
        let group = env.group(name);
        assert!(listed.lines().any(|l| l.trim() == group), "{group} in {listed}");
    }
    let enricher = env.group("enricher");
    let requests = env.topics().requests();
    let described = consumer_groups(&env, &["--describe", "--group", &enricher]);
    let theirs = kafka_positions(&described, &requests);
    let ours = herald_positions(&env, &enricher, &requests);
    assert!(!theirs.is_empty(), "{described}");
    // Kafka's tool leaves out, for a group without members, partitions it never committed.
    for (partition, position) in &ours {
        match theirs.get(partition) {
            Some(judged) => assert_eq!(position, judged, "partition {partition}: {described}"),
            None => assert_eq!(position.0, None, "partition {partition}: {described}"),
        }
    }
    assert!(theirs.keys().all(|p| ours.contains_key(p)), "{ours:?} {theirs:?}");
    assert_eq!(theirs.values().map(|(_, _, lag)| lag).sum::<i64>(), 2, "{described}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_reset_made_with_kafkas_tool_is_honoured_and_the_ledger_keeps_it_from_sending_twice()
 {
    let Some(env) = TestEnv::on_kafka().await else { return };
    for user in ["r1", "r2"] {
        add_user(&env, user, &format!("{user}@example.com")).await;
    }
    deliver(&env, &["r1", "r2"]).await;

    let group = env.group("dispatch-email");
    let topic = env.topics().channel(herald_schemas::Channel::Email);
    let reset = consumer_groups(
        &env,
        &["--reset-offsets", "--group", &group, "--topic", &topic, "--to-earliest", "--execute"],
    );
    assert!(reset.contains(&topic), "{reset}");
    let moved = herald_positions(&env, &group, &topic);
    assert_eq!(
        moved.values().map(|(_, _, lag)| lag).sum::<i64>(),
        2,
        "Herald sees the reset: {moved:?}"
    );

    let pipeline = env.pipeline().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = herald_positions(&env, &group, &topic);
        if now.values().all(|(committed, end, _)| *committed == Some(*end)) {
            break;
        }
        assert!(Instant::now() < deadline, "the dispatcher re-reads from the reset: {now:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per = env.mail.per_recipient();
    assert_eq!(
        (per.get("r1@example.com"), per.get("r2@example.com")),
        (Some(&1), Some(&1)),
        "{per:?}"
    );
    pipeline.stop().await;
}

/// How each batch of `topic` is compressed, as Kafka's log dump tool reads the broker's
/// segments (`compresscodec: zstd`).
fn batch_codecs(topic: &str) -> Vec<String> {
    let dir = std::env::var("HERALD_TEST_KAFKA_DIR").expect("the run's Kafka directory");
    let mut codecs = Vec::new();
    for partition in 0..support::PARTITIONS {
        let segment = format!("{dir}/node-1/data/{topic}-{partition}/00000000000000000000.log");
        let args = ["--files", segment.as_str()];
        let output = herald_testkit::kafka_tool(Some(dir.as_ref()), "dump-log", &args).unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
        codecs.extend(
            stdout
                .lines()
                .filter_map(|l| l.split("compresscodec: ").nth(1))
                .filter_map(|rest| rest.split_whitespace().next())
                .map(str::to_owned),
        );
    }
    codecs
}

/// `compression.type = "zstd"` in `[kafka.producer_properties]`: every record Herald writes
/// is stored zstd-compressed by the broker and read back by the next role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_zstd_compression_the_records_herald_writes_are_stored_compressed_and_delivered() {
    let Some(mut env) = TestEnv::on_kafka().await else { return };
    env.config.kafka.producer_properties.insert("compression.type".into(), "zstd".into());
    add_user(&env, "zstd-user", "zstd@example.com").await;
    deliver(&env, &["zstd-user"]).await;
    let topics = env.topics();
    for topic in [topics.requests(), topics.channel(herald_schemas::Channel::Email)] {
        let codecs = batch_codecs(&topic);
        assert!(!codecs.is_empty(), "{topic}: no batch");
        assert!(codecs.iter().all(|c| c == "zstd"), "{topic}: {codecs:?}");
    }
}
