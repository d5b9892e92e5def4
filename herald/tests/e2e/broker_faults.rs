//! Broker faults on a three-broker Apache Kafka cluster (replication 3,
//! min.insync.replicas=2, every producer acks=all): while notifications flow, the broker
//! leading the most partitions is SIGKILLed and restarted, twice, then all three are
//! restarted one after another. Nothing is lost; nothing is sent twice outside a delivery
//! whose outcome the ledger counted unknown.

use crate::support;

#[test]
fn killing_the_busiest_leader_and_rolling_restarts_of_three_brokers_lose_nothing_and_send_nothing_twice()
 {
    // The cluster is the test's own; the run's Kafka says the Kafka jars are at hand.
    if herald_testkit::required("HERALD_TEST_KAFKA", "Apache Kafka").is_none() {
        return;
    }
    let faults = ["--broker", "kafka", "--faults", "brokers", "--group-protocol", "consumer"];
    let pace = ["--rate", "30", "--kill-every", "3s"];
    let (report, stdout) = support::chaos_run(&[&faults[..], &pace[..]].concat(), 2400);
    assert!(report["broker_kills"].as_u64().unwrap() >= 2, "leaders were killed: {stdout}");
    assert!(report["rolling_restarts"].as_u64().unwrap() >= 1, "a rolling restart: {stdout}");
}
