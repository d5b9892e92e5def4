//! Herald's Avro judged by Confluent's own Python client against the run's real registry
//! (Apicurio): what Herald writes, Confluent's deserializer reads; what Confluent's
//! serializer writes with the latest schema Herald registered (registering nothing itself),
//! Herald delivers. The Python producer is the README's.

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{TestEnv, add_user, email_body, herald_output};

/// The Python with Confluent's client (`infra/python/venv.sh`; `infra/test.sh` sets it).
fn python() -> Option<String> {
    herald_testkit::required("HERALD_TEST_PYTHON", "Python with confluent-kafka")
}

fn repository(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The values of the first `count` records of `topic`, as Confluent's deserializer reads them.
fn read_with_confluent(
    python: &str,
    env: &TestEnv,
    topic: &str,
    count: usize,
) -> Vec<serde_json::Value> {
    let output = Command::new(python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/read_records.py"))
        .args([&env.config.kafka.bootstrap_servers, &env.registry, topic, &count.to_string()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_herald_writes_are_read_by_confluents_python_deserializer() {
    let Some(python) = python() else { return };
    let Some(env) = TestEnv::on_kafka().await else { return };
    add_user(&env, "py1", "py1@example.com").await;
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let (status, body) =
        pipeline.post(Some(&key), &email_body("py1", "From Rust", "to Python")).await;
    assert_eq!(status, 202, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    env.mail.wait_for(Duration::from_secs(40), |m| m.to == ["py1@example.com"]).await.unwrap();
    pipeline.stop().await;

    let requests = read_with_confluent(&python, &env, &env.topics().requests(), 1);
    let request = &requests[0];
    assert_eq!(request["notification_id"], id.as_str());
    assert_eq!(request["recipient"]["user_id"], "py1");
    assert_eq!(request["email"]["subject"], "From Rust");
    assert!(request["accepted_at"].as_i64().unwrap() > 1_700_000_000_000, "{request}");

    // Ingest writes `accepted`, the enricher `routed`, the dispatcher `sent`: three
    // producers, so the log holds them in no set order.
    let events = read_with_confluent(&python, &env, &env.topics().events(), 3);
    assert!(events.iter().all(|e| e["notification_id"] == id.as_str()), "{events:?}");
    let kinds: BTreeSet<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["accepted", "routed", "sent"]), "{events:?}");
    let messages = read_with_confluent(
        &python,
        &env,
        &env.topics().channel(herald_schemas::Channel::Email),
        1,
    );
    assert_eq!(messages[0]["target"], "py1@example.com", "{messages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_written_by_confluents_python_serializer_with_the_latest_schema_is_delivered() {
    let Some(python) = python() else { return };
    let Some(env) = TestEnv::on_kafka().await else { return };
    add_user(&env, "py2", "py2@example.com").await;
    // The roles register Herald's schemas as they start; the producer only looks them up.
    let pipeline = env.pipeline().await;
    let subject = format!("{}-value", env.topics().requests());
    let registered = reqwest::get(format!("{}/subjects/{subject}/versions", env.registry));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut versions = registered.await.unwrap().text().await.unwrap();
    while !versions.starts_with('[') || versions == "[]" {
        assert!(std::time::Instant::now() < deadline, "{subject} never registered: {versions}");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let again = reqwest::get(format!("{}/subjects/{subject}/versions", env.registry));
        versions = again.await.unwrap().text().await.unwrap();
    }

    let output = Command::new(&python)
        .arg(repository("docs/examples/produce_notification.py"))
        .env("KAFKA_BOOTSTRAP_SERVERS", &env.config.kafka.bootstrap_servers)
        .env("SCHEMA_REGISTRY_URL", &env.registry)
        .env("HERALD_REQUESTS_TOPIC", env.topics().requests())
        .env("HERALD_USER_ID", "py2")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let id = stdout.trim().to_owned();
    let mail = env.mail.wait_for(Duration::from_secs(40), |m| m.to == ["py2@example.com"]);
    let mail = mail.await.expect("the Python producer's request is delivered");
    assert_eq!(mail.header("Subject").as_deref(), Some("Your receipt"));
    let message_id = mail.header("Message-ID").unwrap_or_default();
    assert!(message_id.contains(&id), "the notification id it printed: {message_id} {id}");
    let status = herald_output(&env, &["dlq", "list"]);
    assert!(status.starts_with("0 dead letter(s)"), "{status}");
    let versions: Vec<u32> = serde_json::from_str(&versions).unwrap();
    assert_eq!(versions.len(), 1, "the producer registered nothing: {versions:?}");
    pipeline.stop().await;
}

/// The README shows the Python producer this suite runs, as it is.
#[test]
fn the_readme_shows_the_python_producer_the_suite_runs() {
    let producer =
        std::fs::read_to_string(repository("docs/examples/produce_notification.py")).unwrap();
    let readme = std::fs::read_to_string(repository("README.md")).unwrap();
    let code: String =
        producer.lines().skip_while(|l| !l.starts_with("import ")).collect::<Vec<_>>().join("\n");
    assert!(
        readme.contains(&code),
        "README.md shows docs/examples/produce_notification.py from its imports on"
    );
}
