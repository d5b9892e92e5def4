//! Erasure: deleting a user removes them from every store Herald keeps them in, and a send
//! to them afterwards is skipped, never delivered from a cache.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_enricher::directory::QuotaCounter;
use herald_enricher::{Directory as _, FrequencyCaps, Platform};
use reqwest::Method;
use serde_json::json;

use super::{call, outcome, outcomes, send};
use crate::support::TestEnv;

async fn erasing_a_user_leaves_nothing_of_them(mut env: TestEnv) {
    env.config.enricher.frequency_caps = FrequencyCaps::new(BTreeMap::from([(
        "marketing".to_owned(),
        BTreeMap::from([("email".to_owned(), 1)]),
    )]));
    let key = env.directory_key().await;
    let api = env.pipeline().await;
    let user = "erase-me";
    let token = "fcm-token-of-erase-me";
    let profile =
        json!({"email": "erase-me@example.com", "phone": "+14155550100", "timezone": "UTC"});
    assert_eq!(
        call(&api, &key, (Method::PUT, &format!("/v1/users/{user}")), Some(profile)).await.0,
        201
    );
    let device = json!({"platform": "android", "token": token});
    let path = format!("/v1/users/{user}/devices/phone");
    assert_eq!(call(&api, &key, (Method::PUT, &path), Some(device)).await.0, 201);
    let opt_out =
        json!({"preferences": [{"category": "marketing", "channel": "sms", "opted_in": false}]});
    let path = format!("/v1/users/{user}/preferences");
    assert_eq!(call(&api, &key, (Method::PUT, &path), Some(opt_out)).await.0, 200);
    // A notification counted against the cap, one delivered: the stores hold the user's
    // counts, events and addresses.
    let counted = send(&api, &key, user, "email", "marketing").await;
    let delivered = send(&api, &key, user, "email", "transactional").await;
    let found = outcomes(&env, &[counted.clone(), delivered.clone()]).await;
    assert_eq!(outcome(&found[&counted]), "routed erase-me@example.com");
    env.mail
        .wait_for(Duration::from_secs(30), |m| m.to == ["erase-me@example.com"])
        .await
        .expect("mail");
    let status_of = |id: String| {
        let (api, key) = (&api, &key);
        async move { api.get(key, &format!("/v1/notifications/{id}")).await }
    };
    // Both sent and recorded: no event of theirs is still on its way when they are erased.
    let deadline = Instant::now() + Duration::from_secs(30);
    for id in [&counted, &delivered] {
        while status_of(id.clone()).await.1["state"] != "sent" {
            assert!(Instant::now() < deadline, "the status of {id} never recorded");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    assert_eq!(call(&api, &key, (Method::DELETE, &format!("/v1/users/{user}")), None).await.0, 204);
    // Ingest's events: the erasure reaches them through the same topic, moments later.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (counted, delivered) =
            (status_of(counted.clone()).await.0, status_of(delivered.clone()).await.0);
        if (counted, delivered) == (404, 404) {
            break;
        }
        assert!(Instant::now() < deadline, "events of the erased user left: {counted} {delivered}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = send(&api, &key, user, "email", "transactional").await;
    let found = outcomes(&env, std::slice::from_ref(&after)).await;
    assert_eq!(outcome(&found[&after]), "skipped unknown_user");
    assert_eq!(call(&api, &key, (Method::GET, &format!("/v1/users/{user}")), None).await.0, 404);

    // Every store, read directly.
    let directory = env.directory().await;
    assert_eq!(directory.user(user).await.unwrap(), None);
    assert!(directory.devices(user).await.unwrap().is_empty());
    assert!(directory.preferences(user).await.unwrap().is_empty());
    assert!(directory.token_owners(Platform::Android, token).await.unwrap().is_empty());
    let day = herald_enricher::quiet::local_day(herald_schemas::now_millis(), Some("UTC"));
    let counter = QuotaCounter {
        user_id: user.into(),
        category: "marketing".into(),
        channel: "email".into(),
        day,
    };
    assert!(directory.take_quota(&counter, "probe", 1).await.unwrap(), "the cap's count is gone");
    let (_, listed) = api.get(&key, &format!("/v1/users/{user}/notifications")).await;
    let listed: Vec<&str> = listed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["id"].as_str())
        .collect();
    assert_eq!(listed, [after.as_str()], "only the send made after the erasure");
    let stored = serde_json::to_string(&status_of(after).await.1).unwrap();
    assert!(!stored.contains("erase-me@example.com") && !stored.contains(token), "{stored}");
    // The topic: the user's last record is the tombstone compaction keeps alone.
    let changes =
        env.read_topic(&env.topics().directory_changes(), Duration::from_secs(5), |_| false).await;
    let last = changes.iter().rev().find(|m| {
        use herald_runtime::kafka::Message as _;
        m.key() == Some(user.as_bytes())
    });
    let last = last.expect("the user's changes");
    assert!(herald_runtime::kafka::Message::payload(last).is_none(), "a tombstone");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_from_every_store_and_their_next_send_is_skipped() {
    erasing_a_user_leaves_nothing_of_them(TestEnv::start().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_user_is_gone_from_every_store_on_a_cql_node_and_their_next_send_is_skipped() {
    let Some(env) = TestEnv::on_cql().await else { return };
    erasing_a_user_leaves_nothing_of_them(env).await;
}
