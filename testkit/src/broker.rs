//! The broker a fault run or a benchmark works against: Tansu, Apache Kafka started for it,
//! or a cluster already running.

use std::path::Path;
use std::sync::Arc;

use herald_runtime::KafkaConfig;

use crate::tansu::BrokerError;
use crate::{KafkaCluster, Storage, TansuBroker};

/// Which broker to start, on a command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerChoice {
    /// Tansu, `herald dev`'s broker (no JVM).
    Tansu,
    /// Apache Kafka started by `infra/engines/kafka.sh`.
    Kafka,
}

/// A broker in use; started ones stop when this is dropped or stopped.
#[derive(Debug)]
pub enum Broker {
    Tansu(Box<TansuBroker>),
    Kafka(Arc<KafkaCluster>),
    /// A cluster this process did not start, by its bootstrap servers.
    Existing(String),
}

impl Broker {
    /// The broker a test runs on: the run's Apache Kafka (`HERALD_TEST_KAFKA`, which
    /// `infra/test.sh` sets), unless `HERALD_TEST_BROKER=tansu` asks for Tansu; else a Tansu
    /// broker of the test's own, keeping its data in `dir`. Tests on a shared broker keep
    /// apart with prefixes of their own ([`isolate`]).
    pub async fn for_test(dir: &Path) -> Result<Self, BrokerError> {
        let tansu_asked = std::env::var("HERALD_TEST_BROKER").is_ok_and(|b| b == "tansu");
        match std::env::var("HERALD_TEST_KAFKA") {
            Ok(servers) if !servers.is_empty() && !tansu_asked => Ok(Broker::Existing(servers)),
            _ => Self::tansu(dir).await,
        }
    }

    /// A Tansu broker of the caller's own, whatever the run's broker, keeping its data in
    /// `dir`: for a test that stops or freezes the broker.
    pub async fn tansu(dir: &Path) -> Result<Self, BrokerError> {
        let broker = TansuBroker::start(None, Storage::Sqlite(dir.join("broker")), None).await?;
        Ok(Broker::Tansu(Box::new(broker)))
    }

    /// Whether it is Apache Kafka (started here or not).
    pub fn is_kafka(&self) -> bool {
        !matches!(self, Broker::Tansu(_))
    }

    pub fn bootstrap_servers(&self) -> String {
        self.kafka_config().bootstrap_servers
    }

    /// A configuration for it, with the short group timings of tests and benchmarks.
    pub fn kafka_config(&self) -> KafkaConfig {
        match self {
            Broker::Tansu(broker) => broker.kafka_config(),
            Broker::Kafka(cluster) => cluster.kafka_config(),
            Broker::Existing(servers) => {
                let mut config = KafkaConfig::default().with_dev_timings();
                config.bootstrap_servers = servers.clone();
                config
            }
        }
    }

    /// What it is, for reports.
    pub fn name(&self) -> String {
        match self {
            Broker::Tansu(_) => "tansu".into(),
            Broker::Kafka(cluster) => format!("kafka ({} broker(s))", cluster.brokers()),
            Broker::Existing(servers) => format!("kafka at {servers}"),
        }
    }

    /// The processes of a broker this process started.
    pub fn pids(&self) -> Vec<u32> {
        match self {
            Broker::Tansu(broker) => broker.pid().into_iter().collect(),
            Broker::Kafka(cluster) => cluster.pids(),
            Broker::Existing(_) => Vec::new(),
        }
    }

    pub async fn stop(self) {
        match self {
            Broker::Tansu(broker) => broker.stop().await,
            // The last handle stops the cluster when dropped.
            Broker::Kafka(cluster) => drop(cluster),
            Broker::Existing(_) => {}
        }
    }
}

/// Gives `kafka` topic and group prefixes of its own, so that tests sharing one broker never
/// read each other's records or join each other's groups.
pub fn isolate(kafka: &mut KafkaConfig) {
    let id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    static TAKEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = TAKEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let unique = format!("{id:x}{:x}{n:x}", std::process::id());
    kafka.topic_prefix = format!("t{unique}.");
    kafka.group_prefix = format!("t{unique}-");
}

/// Deletes the topics under `kafka`'s prefix ([`isolate`]): on a shared Apache Kafka, the
/// thousands of partitions a run would leave behind slow every later test's metadata
/// requests. Blocks; best effort, as it runs when a test is done.
pub fn drop_topics(kafka: &KafkaConfig) {
    use rdkafka::ClientConfig;
    use rdkafka::admin::{AdminClient, AdminOptions};
    use std::time::Duration;
    let Ok(client) = ClientConfig::new()
        .set("bootstrap.servers", &kafka.bootstrap_servers)
        .create::<AdminClient<rdkafka::client::DefaultClientContext>>()
    else {
        return;
    };
    let Ok(metadata) = client.inner().fetch_metadata(None, Duration::from_secs(10)) else {
        return;
    };
    let names: Vec<&str> = metadata
        .topics()
        .iter()
        .map(rdkafka::metadata::MetadataTopic::name)
        .filter(|name| name.starts_with(&kafka.topic_prefix))
        .collect();
    if names.is_empty() {
        return;
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    if let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
        let _ = runtime.block_on(client.delete_topics(&names, &options));
    }
}
