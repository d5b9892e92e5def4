//! The `herald` binary's configuration handling, as an operator meets it.

use std::process::Command;

fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.env_remove("HERALD_CONFIG").env("RUST_LOG", "error");
    command
}

#[test]
fn environment_overrides_the_file_which_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "[kafka]\nbootstrap_servers = \"from-file:9092\"\n[topics]\npartitions = 12\n",
    )
    .unwrap();
    let output = herald()
        .args(["--config", file.to_str().unwrap(), "config"])
        .env("HERALD__TOPICS__PARTITIONS", "9")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(shown.contains("bootstrap_servers = \"from-file:9092\""), "{shown}");
    assert!(shown.contains("\n[topics]\npartitions = 9\n"), "{shown}");
    assert!(shown.contains("replication_factor = 3"), "defaults fill the rest: {shown}");

    // What it prints is a configuration file that gives the same configuration.
    let effective = dir.path().join("effective.toml");
    std::fs::write(&effective, &shown).unwrap();
    let again =
        herald().args(["--config", effective.to_str().unwrap(), "config"]).output().unwrap();
    assert!(again.status.success(), "{}", String::from_utf8_lossy(&again.stderr));
    assert_eq!(String::from_utf8(again.stdout).unwrap(), shown);
}

#[test]
fn inconsistent_or_unknown_configuration_stops_the_start_with_the_reason() {
    let output = herald()
        .args(["config"])
        .env("HERALD__KAFKA__CONSUMER__HEARTBEAT_INTERVAL_MS", "60000")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("heartbeat_interval_ms"), "{stderr}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[ingest]\nmax_body_byte = 10\n").unwrap();
    let output = herald().args(["--config", file.to_str().unwrap(), "config"]).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("max_body_byte"), "{stderr}");
}

#[test]
fn secrets_named_in_the_config_are_not_printed() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "[kafka]\nproperties = { \"sasl.password\" = \"hunter2-inline\" }\nsecret_properties = { \"ssl.key.password\" = { env = \"KEY_PW\" } }\n",
    )
    .unwrap();
    let output = herald()
        .args(["--config", file.to_str().unwrap(), "config"])
        .env("KEY_PW", "hunter2-env")
        .output()
        .unwrap();
    let shown = String::from_utf8(output.stdout).unwrap();
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("\"sasl.password\" = \"<redacted>\""), "{shown}");
    assert!(shown.contains("env = \"KEY_PW\""), "the source is shown, not the value: {shown}");
}

#[test]
fn bench_dispatch_measures_every_send_against_the_stand_in() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = herald()
        .args(["bench", "dispatch", "--provider", "pushy", "--provider", "twilio"])
        .args(["--provider", "fcm"])
        .args(["--messages", "300", "--provider-only", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("sends/s"), "{stdout}");
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in rows {
        assert_eq!(row["errors"], 0, "{row}");
        assert_eq!(row["sent"], 300, "every send accepted by the stand-in: {row}");
        assert!(row["sends_per_second"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["p99_ms"].as_f64().unwrap() >= row["p50_ms"].as_f64().unwrap(), "{row}");
    }
}

#[test]
fn bench_dispatch_prints_a_raw_copy_through_the_same_broker_beside_each_whole_dispatcher() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let output = herald()
        .args(["bench", "dispatch", "--provider", "pushy", "--messages", "300"])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("broker: tansu"), "the report names its broker: {stdout}");
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let modes: Vec<&str> =
        rows.as_array().unwrap().iter().filter_map(|r| r["mode"].as_str()).collect();
    assert_eq!(modes, ["provider", "raw copy", "dispatcher"], "{rows}");
    for row in rows.as_array().unwrap() {
        assert_eq!(row["sent"], 300, "{row}");
        assert!(row["sends_per_second"].as_f64().unwrap() > 0.0, "{row}");
    }
}

#[test]
fn bench_enrich_times_a_cold_and_a_warm_pass_against_the_raw_copy_with_the_given_tuning() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("enrich.json");
    let tuning = dir.path().join("tuning.toml");
    std::fs::write(&tuning, "[kafka.consumer]\nkey_queues_per_partition = 64\n").unwrap();
    let output = herald()
        .args(["--config", tuning.to_str().unwrap()])
        .args(["bench", "enrich", "--users", "300", "--requests", "200"])
        .args(["--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let runs: Vec<&str> =
        report["rows"].as_array().unwrap().iter().map(|r| r["run"].as_str().unwrap()).collect();
    assert_eq!(runs, ["raw_copy", "enricher_cold", "enricher_warm"]);
    assert_eq!(report["devices"], 600, "1 to 3 devices per user");
    assert_eq!(report["consumers"]["key_queues_per_partition"], 64, "--config tunes the roles");
    assert!(stdout.contains("64 key queues per partition"), "{stdout}");
    for row in &report["rows"].as_array().unwrap()[1..] {
        // Every user has an address and, on average, two devices.
        let targets = row["targets_per_request"].as_f64().unwrap();
        assert!((2.9..=3.1).contains(&targets), "{row}");
        // CPU comes in 10 ms clock ticks: a short window may read zero, never less.
        assert!(row["cpu_ms_per_1000_requests"].as_f64().unwrap() >= 0.0, "{row}");
        assert!(row["seconds"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["peak_rss_mib"].as_f64().unwrap() > 0.0, "{row}");
    }
}

#[test]
fn bench_e2e_delivers_every_target_and_reports_rates_latencies_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("e2e.json");
    let output = herald()
        .args(["bench", "e2e", "--users", "300", "--requests", "100"])
        .args(["--rate", "20", "--rate-seconds", "2", "--json", json.to_str().unwrap()])
        // A warm-up pass first (the default on Kafka), whose deliveries are not counted.
        .args(["--broker-warmup", "1s"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("warm-up"), "no warm-up pass");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    assert!(report["stack"].as_str().unwrap().contains("warmed up for 1 s"), "{report}");
    assert_eq!(report["devices"], 600);
    let full = &report["full_speed"];
    // Every user has an address and 1 to 3 devices: about three deliveries a request.
    let per_request = full["deliveries"].as_f64().unwrap() / full["requests"].as_f64().unwrap();
    assert!((2.9..=3.1).contains(&per_request), "{full}");
    assert!(report["raw_copy_records_per_second"].as_f64().unwrap() > 0.0);
    let rate = &report["rates"][0];
    assert_eq!(rate["requests"], 40);
    let deliveries = rate["deliveries"].as_u64().unwrap();
    assert!((80..=160).contains(&deliveries), "2 to 4 targets a request: {rate}");
    let (p50, max) = (rate["p50_ms"].as_f64().unwrap(), rate["max_ms"].as_f64().unwrap());
    assert!(p50 > 0.0 && p50 <= max, "{rate}");
    let roles: Vec<&str> =
        report["roles"].as_array().unwrap().iter().map(|r| r["role"].as_str().unwrap()).collect();
    assert_eq!(roles[..4], ["enricher", "dispatch-email", "dispatch-ios", "dispatch-android"]);
    assert!(roles.contains(&"broker (tansu)"), "{roles:?}");
    assert!(
        report["roles"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["peak_rss_mib"].as_f64().unwrap() > 0.0)
    );
    assert!(stdout.contains("fixed rate") && stdout.contains("deliveries/s"), "{stdout}");
}

#[test]
fn bench_enrich_on_kafka_loads_a_cql_directory_through_the_import_and_times_both_passes() {
    let (Some(kafka), Some(cql)) = (
        herald_testkit::required("HERALD_TEST_KAFKA", "Apache Kafka"),
        herald_testkit::required("HERALD_SCYLLA_URI", "a CQL node"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("enrich.json");
    let output = herald()
        .args(["bench", "enrich", "--users", "300", "--requests", "200"])
        .args(["--bootstrap-servers", &kafka, "--stores", "cql", "--cql-node", &cql])
        .args(["--broker-warmup", "0s", "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let stack = report["stack"].as_str().unwrap();
    assert!(stack.contains(&format!("kafka at {kafka}")) && stack.contains(&cql), "{stack}");
    assert_eq!(report["loaded"]["records"], 900, "300 users and their 600 devices: {report}");
    assert!(report["loaded"]["records_per_second"].as_f64().unwrap() > 0.0);
    let rows = report["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows[1..] {
        let targets = row["targets_per_request"].as_f64().unwrap();
        assert!((2.9..=3.1).contains(&targets), "the CQL directory's devices: {row}");
    }
}

#[test]
fn bench_ledger_claims_and_completes_every_delivery_on_sqlite_and_on_a_cql_node() {
    let Some(cql) = herald_testkit::required("HERALD_SCYLLA_URI", "a CQL node") else { return };
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("ledger.json");
    let output = herald()
        .args(["bench", "ledger", "--deliveries", "500", "--concurrency", "16"])
        .args(["--cql-node", &cql, "--json", json.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let rows: serde_json::Value = serde_json::from_slice(&std::fs::read(json).unwrap()).unwrap();
    let stores: Vec<&str> =
        rows.as_array().unwrap().iter().map(|r| r["store"].as_str().unwrap()).collect();
    assert_eq!(stores, ["sqlite", "cql (cassandra)"]);
    for row in rows.as_array().unwrap() {
        assert_eq!(row["deliveries"], 500, "{row}");
        assert!(row["deliveries_per_second"].as_f64().unwrap() > 0.0, "{row}");
        assert!(row["p99_ms"].as_f64().unwrap() >= row["p50_ms"].as_f64().unwrap(), "{row}");
    }
}
