//! Scheduled sends: a request with `send_at` waits in the delay tiers, is released on time
//! (never early), and does not hold back requests for now.

use crate::support;

use std::time::{Duration, Instant, SystemTime};

use support::{TestEnv, add_user, email_body};

fn at(offset: Duration) -> String {
    humantime::format_rfc3339_millis(SystemTime::now() + offset).to_string()
}

fn scheduled(user: &str, send_at: &str) -> String {
    let mut body: serde_json::Value =
        serde_json::from_str(&email_body(user, "Your reminder", "It is time.")).unwrap();
    body["send_at"] = send_at.into();
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_send_is_released_on_time_and_does_not_hold_back_others() {
    let env = TestEnv::start().await;
    for user in ["later", "now"] {
        add_user(&env, user, &format!("{user}@example.com")).await;
    }
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let (status, body) =
        pipeline.post(Some(&key), &scheduled("later", &at(Duration::from_secs(40 * 86_400)))).await;
    assert_eq!(status, 422, "too far ahead: {body}");
    assert_eq!(body["errors"][0]["field"], "send_at");

    let lead = Duration::from_secs(6);
    let send_at = SystemTime::now() + lead;
    let posted = Instant::now();
    let (status, body) = pipeline
        .post(
            Some(&key),
            &scheduled("later", &humantime::format_rfc3339_millis(send_at).to_string()),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let (status, _) = pipeline.post(Some(&key), &email_body("now", "Right away", "Hi")).await;
    assert_eq!(status, 202);

    let mut now_arrived = None;
    let mut later_arrived = None;
    let deadline = posted + Duration::from_secs(40);
    while later_arrived.is_none() {
        assert!(Instant::now() < deadline, "never released: {:?}", env.mail.per_recipient());
        let per = env.mail.per_recipient();
        if now_arrived.is_none() && per.contains_key("now@example.com") {
            now_arrived = Some(posted.elapsed());
        }
        if per.contains_key("later@example.com") {
            later_arrived = Some(SystemTime::now());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let now_arrived = now_arrived.expect("the unscheduled mail arrived first");
    assert!(now_arrived < lead, "the unscheduled send waited for nothing: {now_arrived:?}");
    let released = later_arrived.unwrap();
    assert!(released >= send_at, "never early");
    let late = released.duration_since(send_at).unwrap();
    assert!(late < Duration::from_millis(2_500), "released {late:?} after its time");
    pipeline.stop().await;
}
