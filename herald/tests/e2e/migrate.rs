//! `herald migrate` on a fresh CQL node: every store's keyspace and tables as
//! `schemas/cql/` defines them, and a second run that changes nothing and loses nothing.

use std::collections::BTreeSet;
use std::process::Command;

use herald_runtime::config::SecretSource;
use herald_runtime::scylla::{CqlTls, ScyllaConfig, select};
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

/// `herald migrate` with the given stores on `cql`'s node, configured by environment
/// variables as a deployment would (`HERALD__<STORE>__SCYLLA__…`).
fn run_migrate(
    keyspaces: &[(&str, String)],
    cql: &ScyllaConfig,
    args: &[&str],
) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.arg("migrate").args(args).env_remove("HERALD_CONFIG").env("RUST_LOG", "warn");
    for (store, keyspace) in keyspaces {
        let backend = match *store {
            "ENRICHER" => "HERALD__ENRICHER__DIRECTORY_BACKEND",
            "DISPATCH__LEDGER" => "HERALD__DISPATCH__LEDGER__BACKEND",
            _ => "HERALD__INGEST__STORE_BACKEND",
        };
        let store_cql = ScyllaConfig { keyspace: keyspace.clone(), ..cql.clone() };
        command.env(backend, "scylla").envs(herald_testkit::cql::env_vars(store, &store_cql));
    }
    command.output().unwrap()
}

fn migrate(keyspaces: &[(&str, String)], cql: &ScyllaConfig) -> String {
    let output = run_migrate(keyspaces, cql, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    stdout
}

#[tokio::test]
async fn herald_migrate_creates_every_keyspace_and_table_on_a_fresh_cql_node_a_second_run_changes_nothing_and_the_check_waits_for_it()
 {
    let Some(cql) = herald_testkit::cql::node("migrate") else { return };
    let keyspaces = [
        ("ENRICHER", format!("{}_directory", cql.keyspace)),
        ("DISPATCH__LEDGER", format!("{}_ledger", cql.keyspace)),
        ("INGEST", format!("{}_ingest", cql.keyspace)),
    ];
    // What each role's pod waits on: every table is missing, and the check fails.
    let check = run_migrate(&keyspaces, &cql, &["--check"]);
    let listed = String::from_utf8_lossy(&check.stdout).into_owned();
    assert!(!check.status.success(), "{listed}");
    let ledger_table = format!("missing: delivery ledger: {}_ledger.delivery_ledger", cql.keyspace);
    assert!(listed.lines().any(|l| l == ledger_table), "{ledger_table} in {listed}");
    let expected_count = tables_in("enricher.cql").len()
        + tables_in("dispatchers.cql").len()
        + tables_in("ingest.cql").len();
    assert_eq!(listed.lines().filter(|l| l.starts_with("missing: ")).count(), expected_count);

    let first = migrate(&keyspaces, &cql);
    let check = run_migrate(&keyspaces, &cql, &["--check"]);
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
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
    let second = migrate(&keyspaces, &cql);
    assert_eq!(second, first, "the second run reports the same and fails nothing");
    for ((_, keyspace), tables) in keyspaces.iter().zip(&expected) {
        assert_eq!(&tables_of(&session, keyspace).await, tables, "keyspace {keyspace}");
    }
    let count = format!("SELECT state FROM {ledger}.delivery_ledger");
    let statement = session.prepare(count).await.unwrap();
    let rows: Vec<(Option<String>,)> = select(&session, &statement, ()).await.unwrap();
    assert_eq!(rows, [(Some("sent".to_owned()),)], "the row written between the runs is kept");
}

/// The run's node takes TLS only, from clients with a certificate its CA signed, and logs
/// every client in: each way of getting that wrong stops `herald migrate` (as it stops every
/// role at start-up) with the store's name and the cause; the name the node's certificate
/// carries can be checked instead of its address.
#[test]
fn a_wrong_ca_password_certificate_or_server_name_fails_start_up_naming_the_store_and_the_cause() {
    let Some(cql) = herald_testkit::cql::node("migrate_tls") else { return };
    assert!(cql.tls.is_some(), "the run's CQL node takes TLS only (HERALD_TEST_CQL_CA)");
    assert!(
        cql.username.is_some(),
        "the run's CQL node logs clients in (HERALD_TEST_CQL_USERNAME)"
    );
    let ledger = [("DISPATCH__LEDGER", cql.keyspace.clone())];
    let dir = tempfile::tempdir().unwrap();
    let wrong_password = dir.path().join("password");
    std::fs::write(&wrong_password, "not-the-password\n").unwrap();
    let wrong_password = wrong_password.to_string_lossy().into_owned();
    // The SMTP tests' CA, which signed nothing the node has.
    let other_ca = format!("{}/tests/fixtures/smtp-tls/ca.pem", env!("CARGO_MANIFEST_DIR"));
    type Change = Box<dyn Fn(&mut ScyllaConfig, &mut CqlTls)>;
    let cases: [(&str, Change, &[&str]); 4] = [
        (
            "a wrong password",
            Box::new(move |c, _| c.password = Some(SecretSource::File(wrong_password.clone()))),
            &["Authentication"],
        ),
        (
            "a CA that did not sign the node's certificate",
            Box::new(move |_, t| t.ca_file = Some(other_ca.clone().into())),
            &["UnknownIssuer"],
        ),
        (
            "a name the node's certificate does not carry",
            Box::new(|_, t| t.server_name = Some("scylla.example.com".into())),
            &["NotValidForName"],
        ),
        ("no client certificate", Box::new(|_, t| (t.cert_file, t.key_file) = (None, None)), &[]),
    ];
    for (case, change, causes) in cases {
        let mut wrong = cql.clone();
        let mut tls = wrong.tls.clone().unwrap_or_default();
        change(&mut wrong, &mut tls);
        wrong.tls = Some(tls);
        let output = run_migrate(&ledger, &wrong, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{case}: migrate succeeded");
        assert!(stderr.contains("delivery ledger (dispatch.ledger.scylla)"), "{case}: {stderr}");
        assert!(stderr.contains("over TLS"), "{case}: {stderr}");
        for cause in causes {
            assert!(stderr.contains(cause), "{case}: no {cause:?} in {stderr}");
        }
        assert!(!stderr.contains("not-the-password"), "{case}: the secret in {stderr}");
    }
    let mut named = cql;
    if let Some(tls) = named.tls.as_mut() {
        tls.server_name = Some("localhost".into());
    }
    let output = run_migrate(&ledger, &named, &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}
