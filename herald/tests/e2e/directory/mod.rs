//! The directory: its API and its topic (`herald.directory.changes`), the next send seeing
//! each write on every enricher, erasure, refusals, and `herald directory import`.

use crate::support;

mod api;
mod erasure;
mod fresh;
mod import;

use std::collections::HashMap;
use std::time::Duration;

use herald_schemas::{DeliveryEvent, EventKind};
use reqwest::Method;
use serde_json::{Value, json};
use support::TestEnv;

/// Calls the directory API: status and JSON body.
async fn call(
    api: &herald_testkit::SendApi,
    key: &str,
    (method, path): (Method, &str),
    body: Option<Value>,
) -> (u16, Value) {
    api.call(method, key, path, body).await
}

/// Sends one request to `user` on `channel` (email or push) in `category`; its id.
async fn send(
    api: &herald_testkit::SendApi,
    key: &str,
    user: &str,
    channel: &str,
    category: &str,
) -> String {
    let body = match channel {
        "email" => json!({
            "to": [{"user_id": user}], "channels": ["email"], "category": category,
            "from": {"email": "noreply@example.com"}, "subject": "Hello",
            "content": [{"type": "text/plain", "value": "Hello"}],
        }),
        _ => json!({
            "to": [{"user_id": user}], "channels": ["push"], "category": category,
            "push": {"title": "Hello", "body": "Hello"},
        }),
    };
    let (status, answer) = api.post(Some(key), &body.to_string()).await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_owned()
}

/// What the enricher made of each notification: its routed, skipped and failed events,
/// once every one of `ids` has one.
async fn outcomes(env: &TestEnv, ids: &[String]) -> HashMap<String, Vec<DeliveryEvent>> {
    let decided = |e: &DeliveryEvent| {
        matches!(e.kind, EventKind::Routed | EventKind::Skipped | EventKind::Failed)
    };
    let wanted = ids.to_vec();
    let events = env
        .read_records::<DeliveryEvent>(&env.topics().events(), Duration::from_secs(60), |events| {
            wanted.iter().all(|id| events.iter().any(|e| &e.notification_id == id && decided(e)))
        })
        .await;
    let mut by_id: HashMap<String, Vec<DeliveryEvent>> = HashMap::new();
    for event in events.into_iter().filter(|e| decided(e) && ids.contains(&e.notification_id)) {
        by_id.entry(event.notification_id.clone()).or_default().push(event);
    }
    for id in ids {
        assert!(by_id.contains_key(id), "no outcome for {id} within a minute");
    }
    by_id
}

/// The one outcome of a notification: `routed <target>` or `skipped <reason>`.
fn outcome(events: &[DeliveryEvent]) -> String {
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    match event.kind {
        EventKind::Routed => format!("routed {}", event.target.as_deref().unwrap_or_default()),
        kind => format!("{} {}", kind.as_str(), event.reason.as_deref().unwrap_or_default()),
    }
}
