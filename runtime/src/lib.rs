//! What every Herald role runs on: Kafka producer and consumer plumbing (ordered offset
//! storing, drain on rebalance and shutdown, bounded in-flight work, dead letters),
//! configuration pieces shared by the roles, Prometheus metrics, shutdown, SQLite set-up.

pub mod config;
pub mod http;
pub mod kafka;
pub mod metrics;
pub mod scylla;
pub mod shutdown;
pub mod sqlite;
pub mod tracking;

pub use config::{ConsumerTuning, GroupProtocol, KafkaConfig, RegistrySettings, SecretSource};
