//! `herald migrate` on a fresh CQL node: every store's keyspace and tables as
//! `schemas/cql/` defines them, and a second run that changes nothing and loses nothing.

use std::collections::BTreeSet;
use std::process::Command;

use herald_runtime::scylla::select;
use scylla::client::session::Session;

/// The tables a CQL file creates.
fn tables_in(file: &str) -> BTreeSet<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/cql").join(file);
    let text = std::fs::read_to_string(path).unwrap();
    text.split("CREATE TABLE IF NOT EXISTS {keyspace}.")
        .skip(1)
        .map(|rest| {
            rest.split(|c: char| !c.is_alphanumeric() && c != '_').next().unwrap().to_owned()
        })
        .collect()
}

async fn tables_of(session: &Session, keyspace: &str) -> BTreeSet<String> {
    let statement = session
        .prepare("SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?")
        .await
        .unwrap();
    let rows: Vec<(String,)> = select(session, &statement, (keyspace,)).await.unwrap();
    rows.into_iter().map(|(name,)| name).collect()
}

fn migrate(keyspaces: &[(&str, String)], nodes: &str) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.arg("migrate").env_remove("HERALD_CONFIG").env("RUST_LOG", "warn");
    for (store, keyspace) in keyspaces {
        let backend = match *store {
            "ENRICHER" => "HERALD__ENRICHER__DIRECTORY_BACKEND",
            "DISPATCH__LEDGER" => "HERALD__DISPATCH__LEDGER__BACKEND",
            _ => "HERALD__INGEST__STORE_BACKEND",
        };
        command
            .env(backend, "scylla")
            .env(format!("HERALD__{store}__SCYLLA__NODES"), nodes)
            .env(format!("HERALD__{store}__SCYLLA__KEYSPACE"), keyspace)
            .env(format!("HERALD__{store}__SCYLLA__REPLICATION_FACTOR"), "1");
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test]
async fn herald_migrate_creates_every_keyspace_and_table_on_a_fresh_cql_node_and_a_second_run_changes_nothing()
 {
    let Some(cql) = herald_testkit::cql::node("migrate") else { return };
    let keyspaces = [
        ("ENRICHER", format!("{}_directory", cql.keyspace)),
        ("DISPATCH__LEDGER", format!("{}_ledger", cql.keyspace)),
        ("INGEST", format!("{}_ingest", cql.keyspace)),
    ];
    let nodes: Vec<String> = cql.nodes.iter().map(|n| format!("{n:?}")).collect();
    let nodes = format!("[{}]", nodes.join(","));
    let first = migrate(&keyspaces, &nodes);
    for (_, keyspace) in &keyspaces {
        assert!(first.contains(&format!("in keyspace {keyspace}")), "{first}");
    }

    let session = cql.connect().await.unwrap();
    let expected =
        [tables_in("enricher.cql"), tables_in("dispatchers.cql"), tables_in("ingest.cql")];
    for ((_, keyspace), tables) in keyspaces.iter().zip(&expected) {
        assert!(!tables.is_empty());
        assert_eq!(&tables_of(&session, keyspace).await, tables, "keyspace {keyspace}");
    }

    // A row written between the runs survives the second.
    let ledger = &keyspaces[1].1;
    let insert = format!(
        "INSERT INTO {ledger}.delivery_ledger (notification_id, channel, target, state) VALUES ('n1', 'email', 'a@example.com', 'sent')"
    );
    session.query_unpaged(insert, ()).await.unwrap();
    let second = migrate(&keyspaces, &nodes);
    assert_eq!(second, first, "the second run reports the same and fails nothing");
    for ((_, keyspace), tables) in keyspaces.iter().zip(&expected) {
        assert_eq!(&tables_of(&session, keyspace).await, tables, "keyspace {keyspace}");
    }
    let count = format!("SELECT state FROM {ledger}.delivery_ledger");
    let statement = session.prepare(count).await.unwrap();
    let rows: Vec<(Option<String>,)> = select(&session, &statement, ()).await.unwrap();
    assert_eq!(rows, [(Some("sent".to_owned()),)], "the row written between the runs is kept");
}
