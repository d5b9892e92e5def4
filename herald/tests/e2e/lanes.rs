//! Priority lanes: a marketing blast and a sign-in code travel in separate topics and
//! consumer groups, and bulk sends never hold every provider slot, so the code is not
//! queued behind the blast anywhere in the pipeline.

use crate::support;

use std::time::Duration;

use herald_schemas::{Lane, NotificationRequest};
use support::TestEnv;

const BLAST: usize = 1_500;

fn blast() -> String {
    let to: Vec<_> =
        (0..BLAST).map(|i| serde_json::json!({"email": format!("fan{i}@example.com")})).collect();
    serde_json::json!({
        "to": to,
        "category": "marketing",
        "subject": "Winter sale",
        "content": [{"type": "text/plain", "value": "Everything must go."}],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_marketing_blast_never_delays_a_security_code() {
    let env = TestEnv::start().await;
    // A slow relay: the blast takes BLAST x 20 ms / 6 bulk slots, about 5 s, to drain.
    env.mail.set_delay(Some(Duration::from_millis(20)));
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let answer = pipeline
        .http
        .post(format!("{}/v1/notifications/bulk", pipeline.api))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(blast())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    // Let the blast fill the bulk lane's topics and provider slots first.
    while env.mail.total() < 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let code = serde_json::json!({
        "to": [{"email": "owner@example.com"}],
        "category": "security",
        "subject": "Your sign-in code",
        "content": [{"type": "text/plain", "value": "482913"}],
    });
    let (status, body) = pipeline.post(Some(&key), &code.to_string()).await;
    assert_eq!(status, 202, "{body}");
    env.mail
        .wait_for(Duration::from_secs(60), |m| m.to == ["owner@example.com"])
        .await
        .expect("the code is delivered");
    let blast_delivered = env.mail.received().iter().filter(|m| m.to[0].starts_with("fan")).count();
    assert!(
        blast_delivered < BLAST / 5,
        "the code waited for {blast_delivered} of {BLAST} blast mails"
    );

    // Each lane has its own topic.
    let bulk = env
        .read_records::<NotificationRequest>(
            &env.topics().requests_in(Lane::Bulk),
            Duration::from_secs(30),
            |r: &[NotificationRequest]| r.len() >= BLAST,
        )
        .await;
    assert!(bulk.iter().all(|r| r.category == "marketing"));
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (env.mail.total() as usize) < BLAST + 1 {
        assert!(std::time::Instant::now() < deadline, "the blast is delivered too");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    pipeline.stop().await;
}
