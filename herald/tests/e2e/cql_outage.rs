//! The CQL node that holds every store frozen (SIGSTOP: each request to it times out, as a
//! hung or partitioned node's do) while the pipeline runs, then resumed: the send API refuses
//! what it cannot check with a 503 and a reason, within its timeout; a request produced to
//! Kafka meanwhile waits in its topics and is delivered once when the node answers again
//! (docs/operating.md, "The CQL node is down"). A node of the test's own: the run's shared
//! one serves every other test.

use std::time::{Duration, Instant};

use herald_testkit::cql::CassandraNode;
use herald_testkit::mail_sink::ReceivedMail;

use crate::support::{TestEnv, add_user, email_body, herald_command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_cql_node_is_frozen_the_send_api_answers_503_and_a_produced_request_is_delivered_once_after()
 {
    let Some(mut env) = TestEnv::on_kafka().await else { return };
    herald_testkit::required("HERALD_SCYLLA_URI", "a CQL node (its jars)").unwrap();
    let node = CassandraNode::start(&env.dir.path().join("cassandra")).await.unwrap();
    let pid = node.pid().expect("the node's process");
    env.config.put_stores_on(&node.config("herald_outage"));
    herald_wiring::migrate::migrate(&env.config).await.unwrap();
    add_user(&env, "held", "held@example.com").await;
    let key = env.api_key().await;
    let pipeline = env.pipeline().await;
    let subject_count = |subject: &str| {
        let subject = subject.to_owned();
        env.mail
            .received()
            .iter()
            .filter(|m| m.header("Subject").as_deref() == Some(subject.as_str()))
            .count()
    };
    let subject_is =
        |s: &'static str| move |m: &ReceivedMail| m.header("Subject").as_deref() == Some(s);

    let (status, body) = pipeline.post(Some(&key), &email_body("held", "Before", "up")).await;
    assert_eq!(status, 202, "{body}");
    env.mail
        .wait_for(Duration::from_secs(60), subject_is("Before"))
        .await
        .expect("delivered before");

    // The node frozen; a service producing to the requests topic needs no store: its
    // request is held where each role needs the store.
    herald_testkit::signal(pid, "-STOP").unwrap();
    let frozen = Instant::now();
    let file = env.dir.path().join("during.jsonl");
    let line = r#"{"recipient": {"user_id": "held"}, "channels": ["email"], "email": {"subject": "During", "text": "held"}}"#;
    std::fs::write(&file, line).unwrap();
    let produced = herald_command(&env).args(["produce", "--file"]).arg(&file).output().unwrap();
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));

    // The send API needs the store (API keys, the Idempotency-Key): refused, with a reason,
    // within the store's timeout.
    let asked = Instant::now();
    let keyed = [("Idempotency-Key", "frozen-1")];
    let (status, body, _) =
        pipeline.post_with(Some(&key), &email_body("held", "Refused", "no"), &keyed).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"], "unavailable", "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.starts_with("cannot check")), "{body}");
    assert!(asked.elapsed() < Duration::from_secs(20), "answered in {:?}", asked.elapsed());

    // Frozen well past every timeout: nothing moved past the work the node holds up.
    while frozen.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(subject_count("During"), 0, "nothing is sent while the ledger cannot claim it");
    herald_testkit::signal(pid, "-CONT").unwrap();

    env.mail
        .wait_for(Duration::from_secs(90), subject_is("During"))
        .await
        .expect("delivered once the node answers again");
    // Whatever was retried in place while the node was frozen is not sent twice.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(subject_count("During"), 1, "sent once");
    assert_eq!(subject_count("Before"), 1, "sent once");
    assert_eq!(subject_count("Refused"), 0, "refused, never accepted");
    pipeline.stop().await;
    drop(node);
}
