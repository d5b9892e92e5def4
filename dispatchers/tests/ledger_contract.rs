//! One contract for every delivery ledger, written once: it runs against SQLite always and
//! against a CQL node (Apache Cassandra in CI, started by infra/test.sh; ScyllaDB in production).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use herald_dispatchers::ledger::scylla::ScyllaLedger;
use herald_dispatchers::ledger::sqlite::SqliteLedger;
use herald_dispatchers::ledger::{Claim, Completion, DeliveryKey, DeliveryLedger};

const TIMEOUT: Duration = Duration::from_secs(60);
const NOW: i64 = 1_800_000_000_000;

fn key(target: &str) -> DeliveryKey {
    DeliveryKey {
        // Unique per run: a shared ScyllaDB keeps rows between runs.
        notification_id: format!("n-{}", uuid::Uuid::now_v7()),
        channel: "email".into(),
        target: target.into(),
    }
}

async fn contract<L: DeliveryLedger>(ledger: &L) {
    claim_is_exclusive_until_completed(ledger).await;
    released_claim_can_be_claimed_again(ledger).await;
    stale_claim_is_taken_over_once(ledger).await;
    deliveries_differ_by_channel_and_target(ledger).await;
    concurrent_claims_grant_exactly_one(ledger).await;
}

async fn claim_is_exclusive_until_completed<L: DeliveryLedger>(ledger: &L) {
    let k = key("a@example.com");
    assert_eq!(ledger.claim(&k, NOW, TIMEOUT).await.unwrap(), Claim::Granted { took_over: false });
    assert_eq!(ledger.claim(&k, NOW + 1, TIMEOUT).await.unwrap(), Claim::Busy { claimed_at: NOW });
    ledger.complete(&k, Completion::Sent, NOW + 2).await.unwrap();
    assert_eq!(ledger.claim(&k, NOW + 3, TIMEOUT).await.unwrap(), Claim::Done(Completion::Sent));
    // A completed delivery stays done however old its claim gets.
    let much_later = NOW + 10 * 60_000;
    assert_eq!(ledger.claim(&k, much_later, TIMEOUT).await.unwrap(), Claim::Done(Completion::Sent));

    let failed = key("b@example.com");
    ledger.claim(&failed, NOW, TIMEOUT).await.unwrap();
    ledger.complete(&failed, Completion::Failed, NOW).await.unwrap();
    assert_eq!(ledger.claim(&failed, NOW, TIMEOUT).await.unwrap(), Claim::Done(Completion::Failed));
}

async fn released_claim_can_be_claimed_again<L: DeliveryLedger>(ledger: &L) {
    let k = key("retry@example.com");
    ledger.claim(&k, NOW, TIMEOUT).await.unwrap();
    ledger.release(&k).await.unwrap();
    assert_eq!(
        ledger.claim(&k, NOW + 5, TIMEOUT).await.unwrap(),
        Claim::Granted { took_over: false }
    );
}

async fn stale_claim_is_taken_over_once<L: DeliveryLedger>(ledger: &L) {
    let k = key("crashed@example.com");
    ledger.claim(&k, NOW, TIMEOUT).await.unwrap();
    let later = NOW + 61_000;
    assert_eq!(ledger.claim(&k, later, TIMEOUT).await.unwrap(), Claim::Granted { took_over: true });
    assert_eq!(
        ledger.claim(&k, later + 1, TIMEOUT).await.unwrap(),
        Claim::Busy { claimed_at: later },
        "the take-over is a fresh claim"
    );
}

async fn deliveries_differ_by_channel_and_target<L: DeliveryLedger>(ledger: &L) {
    let k = key("same@example.com");
    ledger.claim(&k, NOW, TIMEOUT).await.unwrap();
    let other_channel = DeliveryKey { channel: "sms".into(), ..k.clone() };
    let other_target = DeliveryKey { target: "other@example.com".into(), ..k.clone() };
    for other in [other_channel, other_target] {
        assert_eq!(
            ledger.claim(&other, NOW, TIMEOUT).await.unwrap(),
            Claim::Granted { took_over: false }
        );
    }
}

async fn concurrent_claims_grant_exactly_one<L: DeliveryLedger>(ledger: &L) {
    let k = key("race@example.com");
    let claims = futures::future::join_all((0..16).map(|_| ledger.claim(&k, NOW, TIMEOUT))).await;
    let granted = claims.iter().filter(|c| matches!(c, Ok(Claim::Granted { .. }))).count();
    assert_eq!(granted, 1, "{claims:?}");
}

#[tokio::test]
async fn sqlite_ledger_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open(dir.path().join("ledger.db")).unwrap();
    contract(&ledger).await;

    let old = key("old@example.com");
    ledger.claim(&old, NOW - 1_000, TIMEOUT).await.unwrap();
    assert_eq!(ledger.expire(NOW).await.unwrap(), 1, "entries past retention are removed");
    assert_eq!(
        ledger.claim(&old, NOW, TIMEOUT).await.unwrap(),
        Claim::Granted { took_over: false }
    );
}

#[tokio::test]
async fn scylla_ledger_keeps_the_contract() {
    let Some(config) = herald_testkit::cql::node("ledger_contract") else { return };
    let session = config.connect_creating_keyspace().await.unwrap();
    let keyspace = config.keyspace.as_str();
    ScyllaLedger::create_table(&session, keyspace).await.unwrap();
    let ledger = ScyllaLedger::new(session, keyspace, Duration::from_secs(3600)).await.unwrap();
    contract(&ledger).await;

    // A delivery completed before outcomes had a table of their own: its claim row says so.
    let old = key("before@example.com");
    let session = config.connect().await.unwrap();
    let insert = format!(
        "INSERT INTO {keyspace}.delivery_ledger (notification_id, channel, target, state, claimed_at, updated_at)
         VALUES (?, ?, ?, 'sent', ?, ?) IF NOT EXISTS"
    );
    let statement = session.prepare(insert).await.unwrap();
    let values = (&old.notification_id, &old.channel, &old.target, NOW, NOW);
    session.execute_unpaged(&statement, values).await.unwrap();
    assert_eq!(
        ledger.claim(&old, NOW + 61_000, TIMEOUT).await.unwrap(),
        Claim::Done(Completion::Sent)
    );
}
