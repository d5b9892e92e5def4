//! `herald topics apply` on the real broker: topics created from their definitions
//! (partitions per topic, replication, min.insync.replicas, retention), idempotent, and a
//! change the cluster has to make in place shown before it is made.

use crate::support;

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use support::{TestEnv, herald_command};

/// Topics applied by `herald topics apply` in these tests: under the test's own prefix, so
/// that they go with it.
fn applied(env: &TestEnv) -> String {
    format!("{}applied.", env.config.kafka.topic_prefix)
}

fn apply(env: &TestEnv, config: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = herald_command(env)
        .env("HERALD__KAFKA__TOPIC_PREFIX", applied(env))
        .env("HERALD__TOPICS__REPLICATION_FACTOR", "1")
        .env("HERALD__TOPICS__MIN_INSYNC_REPLICAS", "1")
        .arg("--config")
        .arg(config)
        .args(["topics", "apply"])
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn partitions(env: &TestEnv, topic: &str) -> usize {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.bootstrap_servers)
        .create()
        .unwrap();
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
    metadata.topics()[0].partitions().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_apply_creates_every_topic_as_defined_a_second_run_changes_nothing_and_the_check_waits_for_it()
 {
    let env = TestEnv::start().await;
    let config = env.dir.path().join("topics.toml");
    std::fs::write(
        &config,
        "[topics]\npartitions = 2\n[topics.partitions_of]\n\"channel.email\" = 3\n",
    )
    .unwrap();

    // What each role's pod waits on: fails while a topic is missing.
    let (ok, check) = apply(&env, &config, &["--check"]);
    assert!(!ok, "a check before any topic exists fails: {check}");
    assert!(
        check.contains("differ from their definitions")
            && check.contains("run herald topics apply"),
        "{check}"
    );

    let (ok, plan) = apply(&env, &config, &["--dry-run"]);
    assert!(ok, "{plan}");
    let prefix = applied(&env);
    assert!(
        plan.contains(&format!(
            "{prefix}channel.email: create: 3 partitions, replication factor 1"
        )),
        "{plan}"
    );
    let topics = plan.lines().filter(|l| l.contains(": create:")).count();
    assert!(topics >= 20, "every pipeline topic: {plan}");
    assert!(plan.contains(&format!("{topics} topics: {topics} would be created")), "{plan}");

    let (ok, done) = apply(&env, &config, &[]);
    assert!(ok, "{done}");
    assert!(done.contains(&format!("{topics} created")), "{done}");
    assert_eq!(partitions(&env, &format!("{prefix}channel.email")), 3, "its own partition count");
    assert_eq!(partitions(&env, &format!("{prefix}requests")), 2, "the default partition count");

    // The settings were created with the topics: the broker reports them as defined.
    let (ok, again) = apply(&env, &config, &[]);
    assert!(ok, "{again}");
    assert!(again.contains(&format!("0 created, 0 changed, {topics} as defined")), "{again}");
    let (ok, check) = apply(&env, &config, &["--check"]);
    assert!(ok, "the check passes once applied: {check}");
}

/// Tansu 0.6.0 answers CreatePartitions and AlterConfigs with UnsupportedFeature: this runs
/// on Apache Kafka.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_apply_shows_partition_and_setting_changes_then_makes_them() {
    let Some(env) = TestEnv::on_kafka().await else { return };
    let prefix = applied(&env);
    let config = env.dir.path().join("topics.toml");
    std::fs::write(&config, "[topics]\npartitions = 2\n").unwrap();
    let (ok, created) = apply(&env, &config, &[]);
    assert!(ok, "{created}");

    std::fs::write(
        &config,
        "[topics]\npartitions = 2\ndlq_retention_ms = 3600000\n[topics.partitions_of]\n\"channel.sms\" = 4\n\"requests\" = 1\n",
    )
    .unwrap();
    let (ok, plan) = apply(&env, &config, &["--dry-run"]);
    assert!(ok, "{plan}");
    assert!(plan.contains(&format!("{prefix}channel.sms: partitions 2 -> 4")), "{plan}");
    assert!(plan.contains(&format!("{prefix}dlq: retention.ms 2592000000 -> 3600000")), "{plan}");
    assert!(
        plan.contains(&format!("{prefix}requests: kept: 2 partitions, more than the 1 defined")),
        "{plan}"
    );
    assert!(plan.contains("2 would be changed"), "{plan}");
    let (ok, check) = apply(&env, &config, &["--check"]);
    assert!(!ok && check.contains("2 topic(s) differ"), "a pending change: {check}");
    assert_eq!(partitions(&env, &format!("{prefix}channel.sms")), 2, "a dry run changes nothing");

    let (ok, done) = apply(&env, &config, &[]);
    assert!(ok, "{done}");
    assert!(done.contains("0 created, 2 changed"), "{done}");
    assert_eq!(partitions(&env, &format!("{prefix}channel.sms")), 4, "{done}");
    // Kafka answers AlterConfigs once its controller has the change; the broker describing
    // the topic learns it a moment later.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let retention = topic_setting(&env, &format!("{prefix}dlq"), "retention.ms").await;
        if retention.as_deref() == Some("3600000") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the broker holds {retention:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let (ok, again) = apply(&env, &config, &["--dry-run"]);
    assert!(ok, "{again}");
    assert!(again.contains("0 would be changed"), "{again}");
}

/// A topic's setting as the broker describes it.
async fn topic_setting(env: &TestEnv, topic: &str, key: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &env.config.kafka.bootstrap_servers)
        .create()
        .unwrap();
    let described = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new())
        .await
        .unwrap();
    let resource = described.into_iter().next().unwrap().unwrap();
    resource.get(key).and_then(|entry| entry.value.clone())
}
