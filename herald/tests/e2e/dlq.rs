//! `herald dlq` as an operator runs it: list with filters, show, redrive (dry run first);
//! a redrive leaves poison records alone unless asked and never repeats itself unless asked.

use crate::support;

use std::time::Duration;

use herald_runtime::kafka::Producer;
use support::{TestEnv, add_user, email_body, herald_output};

const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_by_filter_shown_and_redriven_to_delivery() {
    let env = TestEnv::start().await;
    add_user(&env, "u", "bounced@example.com").await;
    env.mail.refuse("bounced@example.com", 451, "mailbox busy");
    let producer = Producer::new(&env.config.kafka, "poisoner").unwrap();
    producer.send(&env.topics().requests(), Some(b"x"), b"not avro", None).await.unwrap();
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let (_, body) = pipeline.post(Some(&key), &email_body("u", "redrive me", "body")).await;
    let id = body["id"].as_str().unwrap().to_owned();
    env.read_topic(&env.topics().dlq(), WAIT, |r| r.len() >= 2).await;

    let all = herald_output(&env, &["dlq", "list"]);
    assert!(all.starts_with("2 dead letter(s)"), "{all}");
    let email_only = herald_output(&env, &["dlq", "list", "--channel", "email"]);
    assert!(email_only.starts_with("1 dead letter(s)"), "{email_only}");
    let row = email_only.lines().nth(2).unwrap();
    assert!(
        row.contains(&id) && row.contains("retries_exhausted") && row.contains("mailbox busy"),
        "{row}"
    );
    let poison = herald_output(&env, &["dlq", "list", "--class", "poison", "--since", "10m"]);
    assert!(
        poison.starts_with("1 dead letter(s)") && poison.contains(&env.group("enricher")),
        "{poison}"
    );
    let none = herald_output(&env, &["dlq", "list", "--until", "1h"]);
    assert!(none.starts_with("0 dead letter(s)"), "{none}");

    let position = row.split('\t').next().unwrap();
    let shown = herald_output(&env, &["dlq", "show", position]);
    assert!(shown.contains("\"target\": \"bounced@example.com\""), "payload decoded: {shown}");
    assert!(shown.contains("herald-first-failure: "), "{shown}");

    let attempts_before = env.mail.attempts("bounced@example.com").len();
    let dry = herald_output(&env, &["dlq", "redrive", "--channel", "email", "--dry-run"]);
    assert!(dry.contains("would redrive 1"), "{dry}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        env.mail.attempts("bounced@example.com").len(),
        attempts_before,
        "a dry run sends nothing"
    );

    env.mail.accept("bounced@example.com");
    let done = herald_output(&env, &["dlq", "redrive", "--channel", "email"]);
    assert!(done.contains("redrove 1"), "{done}");
    let mail = env.mail.wait_for(WAIT, |m| m.to == ["bounced@example.com"]).await;
    assert!(mail.is_some(), "the redriven dead letter was delivered");

    // Again, without a filter: the poison record stays (it would come back at once) and the
    // email's dead letter is not posted a second time.
    let again = herald_output(&env, &["dlq", "redrive"]);
    assert!(again.contains("redrove 0 dead letter(s)"), "{again}");
    assert!(again.contains("left 1 poison record(s)"), "{again}");
    assert!(again.contains("left 1 dead letter(s) redriven before"), "{again}");
    let listed = herald_output(&env, &["dlq", "list", "--class", "retries-exhausted"]);
    let row = listed.lines().nth(2).unwrap();
    assert_eq!(row.split('\t').nth(6).map(|r| r.starts_with("20")), Some(true), "when: {row}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sends = env.mail.per_recipient();
    assert_eq!(sends.get("bounced@example.com"), Some(&1), "delivered once: {sends:?}");

    let bogus = support::herald_command(&env).args(["dlq", "list", "--class", "bogus"]).output();
    let bogus = bogus.unwrap();
    let error = String::from_utf8_lossy(&bogus.stderr);
    assert!(!bogus.status.success() && error.contains("retries_exhausted"), "{error}");
    pipeline.stop().await;
}
