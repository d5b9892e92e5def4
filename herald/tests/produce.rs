//! `herald produce`: JSON lines become Confluent-framed Avro on herald.requests that the
//! pipeline delivers; bad lines are reported by number and skipped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use herald_schemas::NotificationRequest;
use support::{TestEnv, herald_command};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_are_produced_as_avro_and_delivered_and_bad_lines_are_named() {
    let env = TestEnv::start().await;
    let pipeline = env.pipeline().await;
    let file = env.dir.path().join("requests.jsonl");
    let lines = [
        r#"{"notification_id": "batch-1", "recipient": {"email": "p1@example.com"}, "email": {"subject": "Hello 1", "text": "one"}}"#,
        r#"{"recipient": {"email": "p2@example.com"}, "email": {"subject": "Hello 2", "text": "two"}"#,
        r#"{"recipient": {"email": "p3@example.com"}, "category": "security", "email": {"subject": "Hello 3", "text": "three"}}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();

    let output =
        herald_command(&env).args(["produce", "--file", file.to_str().unwrap()]).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!output.status.success(), "a skipped line makes the command fail");
    assert!(stdout.contains("produced 2, skipped 1"), "{stdout}");
    assert!(stderr.contains("line 2: not JSON"), "{stderr}");

    let requests = env
        .read_records::<NotificationRequest>(
            &env.topics().requests(),
            Duration::from_secs(20),
            |r| r.len() >= 2,
        )
        .await;
    assert!(requests.iter().any(|r| r.notification_id == "batch-1"));
    assert!(requests.iter().any(|r| r.category == "security"));
    let deadline = Instant::now() + Duration::from_secs(40);
    while env.mail.received().len() < 2 {
        assert!(Instant::now() < deadline, "mail: {:?}", env.mail.per_recipient());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let per = env.mail.per_recipient();
    assert!(per.contains_key("p1@example.com") && per.contains_key("p3@example.com"), "{per:?}");
    pipeline.stop().await;
}
