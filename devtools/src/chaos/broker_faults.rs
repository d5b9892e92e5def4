//! Broker faults for `herald chaos --faults brokers`, on a three-broker Kafka cluster: the
//! broker leading the most of the pipeline's partitions is SIGKILLed and restarted, twice,
//! then all three are restarted one after another (a rolling restart, as an upgrade does),
//! each step waiting until every replica is back in sync, over and over while the run lasts;
//! the run's traffic lasts at least until the plan has run through once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_runtime::KafkaConfig;
use herald_testkit::KafkaCluster;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tokio_util::sync::CancellationToken;

/// A fault of a chaos run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// A role process SIGKILLed (and started again).
    RoleKilled(String),
    /// A broker SIGKILLed while it led the most partitions.
    LeaderKilled(i32),
    /// A killed broker started again.
    BrokerBack(i32),
    /// A broker stopped cleanly and started again, in a rolling restart.
    BrokerRestarted(i32),
    /// Every replica of the pipeline's topics in sync again.
    InSync,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::RoleKilled(role) => write!(f, "SIGKILL {role}"),
            Fault::LeaderKilled(node) => write!(f, "SIGKILL broker {node} (the busiest leader)"),
            Fault::BrokerBack(node) => write!(f, "broker {node} started again"),
            Fault::BrokerRestarted(node) => write!(f, "broker {node} restarted (rolling)"),
            Fault::InSync => write!(f, "every replica in sync"),
        }
    }
}

/// The faults of a run, with when each happened.
#[derive(Debug, Default)]
pub struct FaultLog(Mutex<Vec<(Instant, Fault)>>);

impl FaultLog {
    pub fn record(&self, fault: Fault) {
        tracing::warn!(%fault, "chaos");
        if let Ok(mut log) = self.0.lock() {
            log.push((Instant::now(), fault));
        }
    }

    pub fn entries(&self) -> Vec<(Instant, Fault)> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }

    pub fn count(&self, kind: impl Fn(&Fault) -> bool) -> usize {
        self.entries().iter().filter(|(_, fault)| kind(fault)).count()
    }
}

/// How long a killed broker stays down before it is started again.
const DOWN_FOR: Duration = Duration::from_secs(3);
/// How long replicas may take to be in sync again after a broker returns.
const IN_SYNC_WITHIN: Duration = Duration::from_secs(120);

/// Runs the fault plan every `every` until `stop`, cancelling `ran` once it has run through;
/// the cluster is whole when it returns.
pub async fn run(
    cluster: Arc<KafkaCluster>,
    kafka: KafkaConfig,
    topics: Vec<String>,
    every: Duration,
    (log, stop, ran): (Arc<FaultLog>, CancellationToken, CancellationToken),
) -> anyhow::Result<()> {
    let plan = [Step::KillLeader, Step::KillLeader, Step::RollingRestart];
    for (taken, step) in plan.iter().cycle().enumerate() {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(every) => {}
        }
        match step {
            Step::KillLeader => {
                let node = busiest_leader(&kafka, &topics).await?;
                cluster.kill(node).await?;
                log.record(Fault::LeaderKilled(node));
                tokio::time::sleep(DOWN_FOR).await;
                cluster.restart(node).await?;
                log.record(Fault::BrokerBack(node));
            }
            Step::RollingRestart => {
                for node in 1..=i32::try_from(cluster.brokers()).unwrap_or(3) {
                    cluster.stop_node(node).await?;
                    cluster.restart(node).await?;
                    log.record(Fault::BrokerRestarted(node));
                    in_sync(&kafka, &topics).await?;
                }
            }
        }
        in_sync(&kafka, &topics).await?;
        log.record(Fault::InSync);
        if taken + 1 == plan.len() {
            ran.cancel();
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Step {
    KillLeader,
    RollingRestart,
}

fn metadata_client(kafka: &KafkaConfig) -> anyhow::Result<BaseConsumer> {
    ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .create()
        .context("a metadata client for the chaos run")
}

/// (leader, replicas, in-sync replicas) of every partition of `topics`.
async fn partitions(
    kafka: &KafkaConfig,
    topics: &[String],
) -> anyhow::Result<Vec<(i32, usize, usize)>> {
    let (kafka, topics) = (kafka.clone(), topics.to_vec());
    tokio::task::spawn_blocking(move || {
        let client = metadata_client(&kafka)?;
        let mut all = Vec::new();
        for topic in &topics {
            let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            for t in metadata.topics() {
                for p in t.partitions() {
                    all.push((p.leader(), p.replicas().len(), p.isr().len()));
                }
            }
        }
        Ok(all)
    })
    .await?
}

/// The broker leading the most partitions of `topics`: the one whose death moves the most.
async fn busiest_leader(kafka: &KafkaConfig, topics: &[String]) -> anyhow::Result<i32> {
    let mut led = std::collections::BTreeMap::<i32, usize>::new();
    for (leader, _, _) in partitions(kafka, topics).await? {
        if leader >= 0 {
            *led.entry(leader).or_default() += 1;
        }
    }
    led.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(node, _)| node)
        .context("no partition has a leader")
}

/// Waits until every partition of `topics` has all its replicas in sync.
async fn in_sync(kafka: &KafkaConfig, topics: &[String]) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let all = partitions(kafka, topics).await;
        if let Ok(all) = &all
            && !all.is_empty()
            && all.iter().all(|(leader, replicas, isr)| *leader >= 0 && isr == replicas)
        {
            return Ok(());
        }
        anyhow::ensure!(
            started.elapsed() < IN_SYNC_WITHIN,
            "replicas not in sync {IN_SYNC_WITHIN:?} after a broker returned"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
