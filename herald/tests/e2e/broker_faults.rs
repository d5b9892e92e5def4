//! Faults on a three-broker Apache Kafka cluster (replication 3, min.insync.replicas=2,
//! every producer acks=all), as production runs it. Broker faults: while notifications
//! flow, the broker leading the most partitions is SIGKILLed and restarted, twice, then all
//! three are restarted one after another. Role faults: the enricher and dispatchers are
//! SIGKILLed and started again, and their partitions must not wait for the dead members.
//! Nothing is lost; nothing is sent twice outside a delivery whose outcome the ledger
//! counted unknown.

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

/// How long a killed role's partitions may go unconsumed: the broker's session timeout for
/// consumer groups (10 s, infra/engines/kafka.sh), and the restart, with room to spare.
const RECOVERY: f64 = 15.0;

fn role_kills_on_three_brokers(protocol: &str, kill_every: &str, notifications: u64) {
    // The cluster is the test's own; the run's Kafka says the Kafka jars are at hand.
    if herald_testkit::required("HERALD_TEST_KAFKA", "Apache Kafka").is_none() {
        return;
    }
    let args = ["--broker", "kafka", "--faults", "roles", "--group-protocol", protocol];
    let pace = ["--rate", "40", "--kill-every", kill_every, "--failure-rate", "0.1"];
    let (report, stdout) = support::chaos_run(&[&args[..], &pace[..]].concat(), notifications);
    assert!(report["kills"].as_u64().unwrap() >= 2, "roles were killed: {stdout}");
    assert_eq!(report["late"], 0, "{stdout}");
    let unconsumed = report["max_unconsumed"]["seconds"].as_f64().unwrap();
    assert!(unconsumed <= RECOVERY, "a partition waited {unconsumed:.1} s: {stdout}");
}

/// Classic groups: a killed process started again under its name (a static member) takes
/// its partitions back without waiting for its old session, even when killed every 3 s.
#[test]
fn a_killed_role_restarted_as_a_static_member_has_its_partitions_consumed_again_within_15_s() {
    role_kills_on_three_brokers("classic", "3s", 1200);
}

/// Consumer groups (KIP-848): the broker hands a dead member's partitions on after its
/// session timeout (10 s) and the next heartbeats; kills spaced beyond that, so that each
/// kill's recovery is measured alone (a process killed again before its partitions reached
/// it makes them wait for a second session).
#[test]
fn under_the_consumer_protocol_a_killed_roles_partitions_are_consumed_again_within_15_s() {
    role_kills_on_three_brokers("consumer", "16s", 1800);
}
