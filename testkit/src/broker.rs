//! The broker a fault run or a benchmark works against: Tansu, Apache Kafka started for it,
//! or a cluster already running.

use std::sync::Arc;

use herald_runtime::KafkaConfig;

use crate::{KafkaCluster, TansuBroker};

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
