//! `POST /v1/notifications/bulk`: many recipients in one request, produced in batches and
//! acknowledged by the broker before the 202.

use std::time::Duration;

use crate::support::ApiEnv;

fn body(recipients: usize) -> String {
    let to: Vec<_> = (0..recipients)
        .map(|i| serde_json::json!({"email": format!("b{i}@example.com")}))
        .collect();
    serde_json::json!({
        "to": to,
        "subject": "Service update",
        "content": [{"type": "text/plain", "value": "We fixed it."}],
    })
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_request_produces_one_record_per_recipient_before_answering() {
    let env = ApiEnv::start().await;
    let api = env.serve().await;
    let key = env.api_key().await;
    let (status, refused) = api.post(Some(&key), &body(1_200)).await;
    assert_eq!(status, 422, "the single-send route keeps its limit: {refused}");

    let answer = api
        .http
        .post(format!("{}/v1/notifications/bulk", api.api))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body(1_200))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 202);
    let answer: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(answer["recipients"], 1_200);
    let id = answer["id"].as_str().unwrap().to_owned();
    let requests = env
        .requests(Duration::from_secs(30), |r| {
            r.iter().filter(|r| r.notification_id == id).count() >= 1_200
        })
        .await;
    let mut recipients: Vec<_> = requests
        .iter()
        .filter(|r| r.notification_id == id)
        .filter_map(|r| r.recipient.email.clone())
        .collect();
    recipients.sort();
    recipients.dedup();
    assert_eq!(recipients.len(), 1_200, "every recipient once");
    api.stop().await;
}
