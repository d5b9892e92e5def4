//! Herald's test kit: the engines its tests, benchmarks and development environment run
//! against. Tansu is started here directly; Apache Kafka, Apache Cassandra and Apicurio
//! Registry are started by the project's scripts under `infra/engines/`, which fetch their
//! jars from Maven Central. Besides the engines: the development schema registry, the SMTP
//! sink. It depends on no role, so any crate's tests may use it; the providers' stand-ins are
//! `herald-standins`. The roles never link this crate.

pub mod broker;
pub mod cql;
pub mod dev_registry;
pub mod engines;
pub mod kafka;
pub mod mail_sink;
pub mod proxy;
pub mod registry;
pub mod schemathesis;
pub mod send_api;
pub mod tansu;

pub use broker::{Broker, BrokerChoice, drop_topics, isolate};
pub use dev_registry::DevRegistry;
pub use engines::{EngineError, free_port, required, signal};
pub use kafka::{KafkaCluster, kafka_tool};
pub use proxy::Tinyproxy;
pub use registry::Apicurio;
pub use send_api::SendApi;
pub use tansu::{BrokerStorage, Storage, TansuBroker};
