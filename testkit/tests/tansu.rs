//! The Tansu launcher: what it adds to the broker it starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use herald_testkit::{Storage, TansuBroker};

/// Tansu's SQLite fetch looks up each returned record's headers by (topition, offset_id);
/// without an index that is a scan of every header ever stored, so the broker slowed down as
/// its log grew. `TansuBroker` indexes them: the lookup Tansu runs must search, not scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_looks_up_record_headers_by_index_not_by_scanning_every_header() {
    let dir = tempfile::tempdir().unwrap();
    let broker = TansuBroker::start(None, Storage::Sqlite(dir.path().join("broker")), None)
        .await
        .expect("Tansu starts (infra/install-tansu.sh)");
    let database = dir.path().join("broker").join("tansu.db");
    let connection = rusqlite::Connection::open(&database).unwrap();
    // The query of Tansu 0.6.0's header_fetch.sql, joins as it writes them.
    let plan: Vec<String> = connection
        .prepare(
            "EXPLAIN QUERY PLAN SELECT h.k, h.v FROM header h \
             JOIN record r ON h.topition = r.topition AND h.offset_id = r.offset_id \
             JOIN topition tp ON tp.id = r.topition JOIN topic t ON tp.topic = t.id \
             JOIN cluster c ON t.cluster = c.id \
             WHERE c.name = ?1 AND t.name = ?2 AND tp.partition = ?3 AND r.offset_id = ?4",
        )
        .unwrap()
        .query_map(rusqlite::params!["tansu", "t", 0, 0], |row| row.get::<_, String>(3))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let header_step = plan.iter().find(|step| step.ends_with(" h") || step.contains(" h USING"));
    let header_step = header_step.unwrap_or_else(|| panic!("no step reads header: {plan:?}"));
    assert!(header_step.contains("USING INDEX herald_header_by_record"), "{plan:?}");
    broker.stop().await;
}
