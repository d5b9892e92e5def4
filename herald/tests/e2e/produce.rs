//! `herald produce`: JSON lines become Confluent-framed Avro on herald.requests that the
//! pipeline delivers; bad lines are reported by number and skipped.

use crate::support;

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

/// A service producing directly skips the send API's checks: the enricher makes them
/// again, so an unassigned number or a broken address fails with the reason (the
/// notification's status says so) and reaches no provider; a misspelt field is refused
/// by `herald produce`, which names the ids it produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produced_targets_the_api_refuses_fail_with_the_reason_and_reach_no_provider() {
    use herald_schemas::{DeliveryEvent, EventKind};

    let env = TestEnv::start().await;
    let pipeline = env.pipeline().await;
    let file = env.dir.path().join("requests.jsonl");
    let lines = [
        r#"{"notification_id": "bad-phone", "recipient": {"phone": "+15551234567"}, "sms": {"text": "hi"}}"#,
        r#"{"notification_id": "bad-email", "recipient": {"email": "nobody at example"}, "email": {"subject": "Hi", "text": "."}}"#,
        r#"{"notification_id": "typo", "priorty": "high", "recipient": {"email": "t@example.com"}, "email": {"subject": "Typo", "text": "."}}"#,
        r#"{"notification_id": "good", "recipient": {"email": "good@example.com"}, "email": {"subject": "Good", "text": "."}}"#,
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let output =
        herald_command(&env).args(["produce", "--file", file.to_str().unwrap()]).output().unwrap();
    let (stdout, stderr) =
        (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(stderr.contains("line 3: unknown field(s): priorty"), "{stderr}");
    for (line, id) in [(1, "bad-phone"), (2, "bad-email"), (4, "good")] {
        assert!(stdout.contains(&format!("line {line}\t{id}\n")), "{stdout}");
    }
    assert!(stdout.contains("produced 3, skipped 1"), "{stdout}");

    let ids = ["bad-phone".to_owned(), "bad-email".to_owned()];
    let events = support::events_until_all(&env, &ids, EventKind::Failed).await;
    for (id, channel, error) in
        [("bad-phone", "sms", "numbering plan"), ("bad-email", "email", "email address")]
    {
        let failed: &DeliveryEvent =
            events.iter().find(|e| e.notification_id == id && e.kind == EventKind::Failed).unwrap();
        assert_eq!(failed.channel.as_deref(), Some(channel));
        assert_eq!(failed.reason.as_deref(), Some("invalid_target"));
        assert!(failed.detail["error"].contains(error), "{failed:?}");
        assert!(
            !events.iter().any(|e| e.notification_id == id && e.kind == EventKind::Routed),
            "{id} reached no dispatcher"
        );
    }
    let key = env.api_key().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = pipeline.get(&key, "/v1/notifications/bad-phone").await;
        if status["state"] == "failed" {
            break;
        }
        assert!(Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    env.mail
        .wait_for(Duration::from_secs(40), |m| m.header("Subject").as_deref() == Some("Good"))
        .await
        .expect("the good line delivered");
    assert!(!env.mail.per_recipient().contains_key("nobody at example"));
    pipeline.stop().await;
}
