//! One contract for ingest's stores (API clients, idempotency keys, statuses, webhooks),
//! written once: it runs against SQLite always and against a CQL node (Apache Cassandra in
//! CI, started by infra/test.sh; ScyllaDB in production). Two handles on one store stand for
//! two ingest instances.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use herald_ingest::idempotency::{Begin, PENDING_TIMEOUT_MS};
use herald_ingest::store::ScyllaIngestStore;
use herald_ingest::{ClientPolicy, IngestStores};
use herald_schemas::{DeliveryEvent, EventKind};

const DAY: i64 = 86_400_000;

/// Unique per run: a shared ScyllaDB keeps rows between runs.
fn unique(name: &str) -> String {
    format!("{name}-{}", uuid::Uuid::now_v7())
}

/// `first` and `second` are two instances' handles on one store.
async fn contract(first: &IngestStores, second: &IngestStores) {
    a_key_authenticates_on_every_instance_until_revoked(first, second).await;
    clients_are_listed_oldest_first_with_their_policies(first).await;
    a_key_replays_its_answer_and_refuses_another_body(first, second).await;
    a_stale_claim_is_taken_over_under_the_same_notification_id(first).await;
    a_released_claim_is_taken_over_at_once_under_the_same_notification_id(first, second).await;
    concurrent_first_requests_with_one_key_let_exactly_one_proceed(first, second).await;
    later_states_win_regardless_of_arrival_and_duplicates_are_ignored(first, second).await;
    a_users_list_is_newest_first_paged_and_only_the_callers(first).await;
    a_webhook_is_set_replaced_with_a_new_secret_and_removed(first, second).await;
    erasing_a_user_removes_every_event_naming_them_and_nothing_of_others(first, second).await;
}

async fn erasing_a_user_removes_every_event_naming_them_and_nothing_of_others(
    first: &IngestStores,
    second: &IngestStores,
) {
    let (user, other, client) = (unique("gone"), unique("stays"), unique("c"));
    let named = |id: &str, kind: EventKind, at: i64, user: Option<&str>, target: Option<&str>| {
        let mut e = DeliveryEvent::new(id, kind);
        e.occurred_at = at;
        e.user_id = user.map(str::to_owned);
        e.target = target.map(str::to_owned);
        e.detail.insert("client_id".into(), client.clone());
        e
    };
    // Theirs alone (a delivery report names no user, only their address); theirs and
    // another user's (a bulk send); another user's alone.
    let (alone, shared, others) = (unique("n"), unique("n"), unique("n"));
    first
        .status
        .record(vec![
            named(&alone, EventKind::Accepted, 1, Some(&user), None),
            named(&alone, EventKind::Routed, 2, Some(&user), Some("gone@example.com")),
            named(&alone, EventKind::Delivered, 3, None, Some("gone@example.com")),
            named(&shared, EventKind::Accepted, 1, Some(&user), None),
            named(&shared, EventKind::Accepted, 1, Some(&other), None),
            named(&shared, EventKind::Routed, 2, Some(&user), Some("gone@example.com")),
            named(&shared, EventKind::Routed, 2, Some(&other), Some("stays@example.com")),
            named(&shared, EventKind::Delivered, 3, None, Some("stays@example.com")),
            named(&others, EventKind::Accepted, 1, Some(&other), None),
        ])
        .await
        .unwrap();
    assert_eq!(second.status.erase_user(&user).await.unwrap(), 5);
    assert_eq!(first.status.status(&alone).await.unwrap(), None, "nothing of it left");
    let left = first.status.status(&shared).await.unwrap().unwrap();
    let named_users: Vec<_> = left.events.iter().filter_map(|e| e.user_id.as_deref()).collect();
    assert!(named_users.iter().all(|u| *u == other), "{named_users:?}");
    assert_eq!(left.events.len(), 3, "the other user's accepted, routed, and the report");
    assert!(!serde_json::to_string(&left).unwrap().contains("gone@example.com"));
    assert_eq!(first.status.status(&others).await.unwrap().unwrap().events.len(), 1);
    assert!(
        first.status.for_user(&user, &client, None, 10).await.unwrap().notifications.is_empty()
    );
    assert_eq!(
        first.status.for_user(&other, &client, None, 10).await.unwrap().notifications.len(),
        2
    );
    assert_eq!(second.status.erase_user(&user).await.unwrap(), 0, "again: nothing left");
}

async fn a_key_authenticates_on_every_instance_until_revoked(
    first: &IngestStores,
    second: &IngestStores,
) {
    let (client, key) = first.clients.add("billing").await.unwrap();
    let caller = second.clients.authenticate(&key).await.unwrap().unwrap();
    assert_eq!(caller.client_id, client.client_id);
    assert_eq!(second.clients.authenticate("hrld_wrong").await.unwrap(), None);
    assert_eq!(second.clients.authenticate("not-a-key").await.unwrap(), None);

    assert!(first.clients.revoke(&client.client_id).await.unwrap());
    assert!(!first.clients.revoke(&client.client_id).await.unwrap(), "revoked once");
    assert!(!first.clients.revoke(&unique("nobody")).await.unwrap(), "no such client");
    // The other instance remembers the key for a second at most.
    tokio::time::sleep(herald_ingest::RECENT_KEY_TTL).await;
    assert_eq!(second.clients.authenticate(&key).await.unwrap(), None);
}

async fn clients_are_listed_oldest_first_with_their_policies(stores: &IngestStores) {
    let policy = ClientPolicy {
        channels: vec!["email".into()],
        categories: vec!["transactional".into()],
        rate_per_second: Some(5.0),
        directory: Some(herald_ingest::DirectoryAccess::Write),
    };
    let name = unique("receipts");
    let (older, _) = stores.clients.add(&unique("shop")).await.unwrap();
    let (newer, key) = stores.clients.add_with(&name, policy.clone()).await.unwrap();
    assert_eq!(stores.clients.authenticate(&key).await.unwrap().unwrap().policy, policy);
    let listed = stores.clients.list().await.unwrap();
    let position = |id: &str| listed.iter().position(|c| c.client_id == id).unwrap();
    assert!(position(&older.client_id) < position(&newer.client_id), "oldest first");
    let found = &listed[position(&newer.client_id)];
    assert_eq!(
        (found.name.as_str(), &found.policy, found.revoked),
        (name.as_str(), &policy, false)
    );
}

async fn a_key_replays_its_answer_and_refuses_another_body(
    first: &IngestStores,
    second: &IngestStores,
) {
    let (client, other_client, key) = (unique("c"), unique("c"), unique("k"));
    let begin = |stores: &IngestStores, client: &str, hash: &str, id: &str, now: i64| {
        let (idempotency, client, key) = (stores.idempotency.clone(), client.to_owned(), &key);
        let (hash, id) = (hash.to_owned(), id.to_owned());
        async move { idempotency.begin(&client, key, &hash, &id, now).await.unwrap() }
    };
    let now = 1_800_000_000_000;
    assert_eq!(
        begin(first, &client, "h1", "n-1", now).await,
        Begin::Proceed { notification_id: "n-1".into() }
    );
    assert_eq!(begin(second, &client, "h1", "n-2", now + 1).await, Begin::InProgress);
    first.idempotency.finish(&client, &key, 202, "{\"id\":\"n-1\"}").await.unwrap();
    assert_eq!(
        begin(second, &client, "h1", "n-3", now + 2).await,
        Begin::Replay { status: 202, response: "{\"id\":\"n-1\"}".into() }
    );
    assert_eq!(begin(second, &client, "h2", "n-4", now + 2).await, Begin::Mismatch);
    assert_eq!(
        begin(second, &other_client, "h2", "n-5", now + 2).await,
        Begin::Proceed { notification_id: "n-5".into() },
        "keys belong to their client"
    );
    assert_eq!(
        begin(first, &client, "h2", "n-6", now + DAY + 1).await,
        Begin::Proceed { notification_id: "n-6".into() },
        "the window has passed"
    );
    assert_eq!(begin(second, &client, "h2", "n-7", now + DAY + 2).await, Begin::InProgress);
}

async fn a_stale_claim_is_taken_over_under_the_same_notification_id(stores: &IngestStores) {
    let (client, key) = (unique("c"), unique("k"));
    let store = &stores.idempotency;
    let now = 1_800_000_000_000;
    store.begin(&client, &key, "h1", "n-1", now).await.unwrap();
    assert_eq!(
        store.begin(&client, &key, "h1", "n-2", now + PENDING_TIMEOUT_MS).await.unwrap(),
        Begin::Proceed { notification_id: "n-1".into() }
    );
    assert_eq!(
        store.begin(&client, &key, "h1", "n-3", now + PENDING_TIMEOUT_MS + 1).await.unwrap(),
        Begin::InProgress,
        "the take-over is a fresh claim"
    );
    store.abandon(&client, &key).await.unwrap();
    assert_eq!(
        store.begin(&client, &key, "h9", "n-4", now + PENDING_TIMEOUT_MS + 2).await.unwrap(),
        Begin::Proceed { notification_id: "n-4".into() },
        "an abandoned key is free"
    );
    store.finish(&client, &key, 202, "{}").await.unwrap();
    store.abandon(&client, &key).await.unwrap();
    assert!(
        matches!(
            store.begin(&client, &key, "h9", "n-5", now + 60_000).await.unwrap(),
            Begin::Replay { .. }
        ),
        "an answered key is not abandoned"
    );
}

async fn a_released_claim_is_taken_over_at_once_under_the_same_notification_id(
    first: &IngestStores,
    second: &IngestStores,
) {
    let (client, key) = (unique("c"), unique("k"));
    let now = 1_800_000_000_000;
    let begin = |stores: &IngestStores, id: &'static str, at: i64| {
        let (client, key) = (client.clone(), key.clone());
        let store = stores.idempotency.clone();
        async move { store.begin(&client, &key, "h1", id, at).await.unwrap() }
    };
    assert_eq!(begin(first, "n-1", now).await, Begin::Proceed { notification_id: "n-1".into() });
    first.idempotency.release(&client, &key, now + 5).await.unwrap();
    assert_eq!(
        begin(second, "n-2", now + 6).await,
        Begin::Proceed { notification_id: "n-1".into() },
        "a retry right after the release goes ahead as the same notification"
    );
    assert_eq!(begin(first, "n-3", now + 7).await, Begin::InProgress, "the take-over is a claim");
    first.idempotency.finish(&client, &key, 202, "{}").await.unwrap();
    first.idempotency.release(&client, &key, now + 8).await.unwrap();
    assert!(
        matches!(begin(second, "n-4", now + 9).await, Begin::Replay { .. }),
        "an answered key is not released"
    );
}

async fn concurrent_first_requests_with_one_key_let_exactly_one_proceed(
    first: &IngestStores,
    second: &IngestStores,
) {
    let (client, key) = (unique("c"), unique("k"));
    let now = 1_800_000_000_000;
    let attempts = (0..16).map(|i| {
        let stores = if i % 2 == 0 { first } else { second };
        let (client, key) = (&client, &key);
        async move { stores.idempotency.begin(client, key, "h", &format!("n-{i}"), now).await }
    });
    let answers = futures::future::join_all(attempts).await;
    let proceeded = answers.iter().filter(|a| matches!(a, Ok(Begin::Proceed { .. }))).count();
    assert_eq!(proceeded, 1, "{answers:?}");
}

fn event(id: &str, kind: EventKind, at: i64, target: &str) -> DeliveryEvent {
    let mut e = DeliveryEvent::new(id, kind);
    e.occurred_at = at;
    e.channel = Some("email".into());
    e.target = Some(target.into());
    e
}

async fn later_states_win_regardless_of_arrival_and_duplicates_are_ignored(
    first: &IngestStores,
    second: &IngestStores,
) {
    let id = unique("n");
    let client = unique("c");
    let mut accepted = DeliveryEvent::new(&id, EventKind::Accepted);
    accepted.occurred_at = 1;
    accepted.detail.insert("client_id".into(), client.clone());
    let sent = event(&id, EventKind::Sent, 30, "a@example.com");
    let retrying = event(&id, EventKind::Retrying, 20, "a@example.com");
    // The dispatcher's event may arrive before the enricher's, and at another instance.
    let routed = event(&id, EventKind::Routed, 10, "a@example.com");
    let failed = event(&id, EventKind::Failed, 25, "b@example.com");
    first.status.record(vec![accepted, sent.clone(), retrying]).await.unwrap();
    second.status.record(vec![routed, failed]).await.unwrap();
    second.status.record(vec![sent]).await.unwrap();

    let status = first.status.status(&id).await.unwrap().unwrap();
    assert_eq!(status.events.len(), 5, "the duplicate was ignored");
    let times: Vec<i64> = status.events.iter().map(|e| e.at).collect();
    assert_eq!(times, [1, 10, 20, 25, 30], "oldest first");
    assert_eq!(status.accepted_at, Some(1));
    assert_eq!(status.client_id.as_deref(), Some(client.as_str()));
    let states: Vec<_> = status.deliveries.iter().map(|d| (d.target.as_str(), d.state)).collect();
    assert_eq!(states, [("a@example.com", "sent"), ("b@example.com", "failed")]);
    assert_eq!(status.state, "partially_failed");
    assert_eq!(second.status.client_of(&id).await.unwrap(), Some(client));
    assert_eq!(second.status.status(&unique("unknown")).await.unwrap(), None);
    assert_eq!(second.status.client_of(&unique("unknown")).await.unwrap(), None);
}

async fn a_users_list_is_newest_first_paged_and_only_the_callers(stores: &IngestStores) {
    let (user, other_user, client, other_client) =
        (unique("u"), unique("u"), unique("c"), unique("c"));
    let accepted = |id: &str, at: i64, user: &str, client: &str| {
        let mut e = DeliveryEvent::new(id, EventKind::Accepted);
        e.occurred_at = at;
        e.user_id = Some(user.into());
        e.detail.insert("client_id".into(), client.into());
        e
    };
    let ids: Vec<String> = (1..=5).map(|_| unique("n")).collect();
    let mut skipped = DeliveryEvent::new(&ids[1], EventKind::Skipped);
    skipped.occurred_at = 25;
    skipped.reason = Some("opted_out".into());
    stores
        .status
        .record(vec![
            accepted(&ids[0], 10, &user, &client),
            accepted(&ids[1], 20, &user, &client),
            accepted(&ids[2], 30, &user, &client),
            accepted(&ids[3], 40, &user, &other_client),
            accepted(&ids[4], 50, &other_user, &client),
            skipped,
        ])
        .await
        .unwrap();
    let first = stores.status.for_user(&user, &client, None, 2).await.unwrap();
    let listed: Vec<_> = first.notifications.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(listed, [&ids[2], &ids[1]], "newest first, not another client's or user's");
    assert_eq!(first.notifications[1].skipped, ["opted_out"]);
    assert_eq!(first.next_before, Some(20));
    let second = stores.status.for_user(&user, &client, first.next_before, 2).await.unwrap();
    let listed: Vec<_> = second.notifications.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(listed, [&ids[0]]);
    assert_eq!(second.next_before, None, "the last page");
}

async fn a_webhook_is_set_replaced_with_a_new_secret_and_removed(
    first: &IngestStores,
    second: &IngestStores,
) {
    let client = unique("c");
    let set = first.webhooks.set(&client, "https://a.example.com/h", &["sent".into()]).await;
    let webhook = set.unwrap();
    assert_eq!(second.webhooks.of(&client).await.unwrap(), Some(webhook.clone()));
    assert!(webhook.wants("sent") && !webhook.wants("failed"));
    let oldest = second.webhooks.first_registered_at().await.unwrap().unwrap();
    assert!(oldest <= herald_schemas::now_millis(), "registered before now");

    let replaced = second.webhooks.set(&client, "https://b.example.com/h", &[]).await.unwrap();
    assert_ne!(replaced.secret, webhook.secret, "a new secret each time");
    let read = first.webhooks.of(&client).await.unwrap().unwrap();
    assert_eq!((read.url.as_str(), read.wants("failed")), ("https://b.example.com/h", true));

    assert!(first.webhooks.remove(&client).await.unwrap());
    assert!(!second.webhooks.remove(&client).await.unwrap(), "removed once");
    assert_eq!(second.webhooks.of(&client).await.unwrap(), None);
}

#[tokio::test]
async fn sqlite_ingest_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ingest.db");
    let first = IngestStores::open_sqlite(&path, DAY).unwrap();
    let second = IngestStores::open_sqlite(&path, DAY).unwrap();
    contract(&first, &second).await;
}

#[tokio::test]
async fn scylla_ingest_store_keeps_the_contract() {
    let Some(config) = herald_testkit::cql::node("ingest_contract") else { return };
    let session = config.connect_creating_keyspace().await.unwrap();
    ScyllaIngestStore::create_tables(&session, &config.keyspace).await.unwrap();
    let first = Arc::new(ScyllaIngestStore::new(session, &config.keyspace, DAY).await.unwrap());
    let second = Arc::new(ScyllaIngestStore::connect(&config, DAY).await.unwrap());
    contract(&IngestStores::on_scylla(&first), &IngestStores::on_scylla(&second)).await;
}
