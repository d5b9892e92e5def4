//! The one typed configuration: defaults (in each section's `Default`), then an optional
//! TOML file, then `HERALD__SECTION__KEY` environment variables; validated before anything
//! starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use herald_dispatchers::DispatchConfig;
use herald_dispatchers::routes;
use herald_enricher::EnricherConfig;
use herald_ingest::IngestConfig;
use herald_runtime::kafka::admin::TopicSpec;
use herald_runtime::{KafkaConfig, RegistrySettings};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HeraldConfig {
    pub kafka: KafkaConfig,
    pub schema_registry: RegistrySettings,
    pub topics: TopicsConfig,
    pub ingest: IngestConfig,
    pub enricher: EnricherConfig,
    pub dispatch: DispatchConfig,
    pub ops: OpsConfig,
    pub tracking: herald_runtime::tracking::TrackingConfig,
}

/// The topic definitions `herald topics apply` brings the cluster to. Which topics exist
/// follows from the pipeline (retry tiers from `dispatch.retry`); this sets their layout.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Partitions of every topic not named in `partitions_of`: the most members a consumer
    /// group can use.
    pub partitions: i32,
    /// Per topic, by its name without the prefix (`channel.email`, `requests.bulk`).
    pub partitions_of: BTreeMap<String, i32>,
    pub replication_factor: i32,
    /// Replicas that must have a record before `acks=all` returns; never more than the
    /// replication factor of the topic.
    pub min_insync_replicas: i32,
    pub retention_ms: u64,
    /// The dead-letter topic is kept longer: operators read it after an incident.
    pub dlq_retention_ms: u64,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        const DAY_MS: u64 = 24 * 60 * 60 * 1000;
        Self {
            partitions: 6,
            partitions_of: BTreeMap::new(),
            replication_factor: 3,
            min_insync_replicas: 2,
            retention_ms: 7 * DAY_MS,
            dlq_retention_ms: 30 * DAY_MS,
        }
    }
}

impl TopicsConfig {
    /// One broker (`herald dev`, tests, benchmarks): one replica, which is then the one that
    /// must be in sync.
    pub fn for_single_broker(&mut self) {
        self.replication_factor = 1;
        self.min_insync_replicas = 1;
    }
}

/// Health and metrics endpoints of the consumer roles (`herald enrich`, `herald dispatch`);
/// the send API serves them on its own port.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpsConfig {
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration cannot be read: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration is inconsistent: {0}")]
    Invalid(String),
}

impl HeraldConfig {
    /// The configuration as the TOML file it is read from, every setting written out,
    /// secret-looking Kafka properties redacted (secrets themselves are never in it: only
    /// the variables and files they are read from).
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        let shown = HeraldConfig { kafka: self.kafka.redacted(), ..self.clone() };
        toml::to_string(&shown)
    }

    /// Defaults, then `file` (if given), then `HERALD__…` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(HeraldConfig::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::Invalid(format!(
                    "config file {} does not exist",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        let config: HeraldConfig = figment
            .merge(Env::prefixed("HERALD__").split("__"))
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))?;
        config.validate()?;
        Ok(config)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |m: String| Err(ConfigError::Invalid(m));
        if self.kafka.bootstrap_servers.trim().is_empty() {
            return fail("kafka.bootstrap_servers is empty".into());
        }
        let group_prefix = &self.kafka.group_prefix;
        if group_prefix.is_empty()
            || !group_prefix.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            return fail(format!(
                "kafka.group_prefix {group_prefix:?} must be letters, digits, '.', '_' or '-' (e.g. \"herald-\")"
            ));
        }
        let consumer = &self.kafka.consumer;
        if consumer.max_in_flight == 0 || consumer.key_queues_per_partition == 0 {
            return fail(
                "kafka.consumer.max_in_flight and key_queues_per_partition must be at least 1"
                    .into(),
            );
        }
        if consumer.heartbeat_interval_ms >= consumer.session_timeout_ms {
            return fail(format!(
                "kafka.consumer.heartbeat_interval_ms ({}) must be below session_timeout_ms ({})",
                consumer.heartbeat_interval_ms, consumer.session_timeout_ms
            ));
        }
        if u64::from(consumer.max_poll_interval_ms) <= consumer.drain_deadline_ms {
            return fail(format!(
                "kafka.consumer.drain_deadline_ms ({}) must be below max_poll_interval_ms ({}): a drain runs inside a rebalance",
                consumer.drain_deadline_ms, consumer.max_poll_interval_ms
            ));
        }
        if !self.schema_registry.url.starts_with("http://")
            && !self.schema_registry.url.starts_with("https://")
        {
            return fail(format!(
                "schema_registry.url {:?} is not an http(s) URL",
                self.schema_registry.url
            ));
        }
        self.schema_registry.validate().map_err(ConfigError::Invalid)?;
        self.validate_topics().map_err(ConfigError::Invalid)?;
        self.tracking.validate().map_err(ConfigError::Invalid)?;
        self.enricher.region_routes.validate().map_err(ConfigError::Invalid)?;
        self.enricher.fallback.validate().map_err(ConfigError::Invalid)?;
        self.enricher.frequency_caps.validate().map_err(ConfigError::Invalid)?;
        let ingest = &self.ingest;
        if ingest.bulk_max_recipients < ingest.max_recipients
            || ingest.bulk_max_body_bytes < ingest.max_body_bytes
        {
            return fail(
                "ingest.bulk_max_recipients and bulk_max_body_bytes must be at least max_recipients and max_body_bytes".into(),
            );
        }
        if self.ingest.max_body_bytes < 1024 || self.ingest.max_recipients == 0 {
            return fail(
                "ingest.max_body_bytes must be at least 1024 and max_recipients at least 1".into(),
            );
        }
        if self.dispatch.retry.delays_ms.is_empty() || self.dispatch.retry.delays_ms.contains(&0) {
            return fail(
                "dispatch.retry.delays_ms needs at least one tier, each with a delay above 0"
                    .into(),
            );
        }
        routes::check(&self.dispatch)
            .map_err(|e| ConfigError::Invalid(format!("dispatch: {e}")))?;
        let longest = routes::longest_timeout_ms(&self.dispatch);
        if self.dispatch.ledger.claim_timeout_ms <= longest {
            return fail(format!(
                "dispatch.ledger.claim_timeout_ms ({}) must exceed the longest provider timeout ({longest} ms): a claim must outlive the call it guards",
                self.dispatch.ledger.claim_timeout_ms
            ));
        }
        Ok(())
    }

    fn validate_topics(&self) -> Result<(), String> {
        let topics = &self.topics;
        if topics.partitions < 1 || topics.replication_factor < 1 || topics.min_insync_replicas < 1
        {
            return Err(
                "topics.partitions, replication_factor and min_insync_replicas must be at least 1"
                    .into(),
            );
        }
        if topics.min_insync_replicas > topics.replication_factor {
            return Err(format!(
                "topics.min_insync_replicas ({}) exceeds replication_factor ({}): no write could succeed",
                topics.min_insync_replicas, topics.replication_factor
            ));
        }
        let prefix = &self.kafka.topic_prefix;
        let names = self.kafka.topics().all(self.dispatch.retry.policy().tiers());
        for (topic, partitions) in &topics.partitions_of {
            if !names.iter().any(|n| n.strip_prefix(prefix.as_str()) == Some(topic.as_str())) {
                return Err(format!(
                    "topics.partitions_of names {topic:?}, which is not a pipeline topic (names are without the {prefix:?} prefix, e.g. \"channel.email\")"
                ));
            }
            if *partitions < 1 {
                return Err(format!("topics.partitions_of.{topic:?} must be at least 1"));
            }
        }
        Ok(())
    }

    /// Every pipeline topic with this configuration's layout.
    /// Puts every store (the enricher's directory, the delivery ledger, the ingest store) in
    /// `cql`'s keyspace: one CQL cluster for all three.
    pub fn put_stores_on(&mut self, cql: &herald_runtime::scylla::ScyllaConfig) {
        self.enricher.directory_backend = herald_enricher::DirectoryBackend::Scylla;
        self.enricher.scylla = cql.clone();
        self.dispatch.ledger.backend = herald_dispatchers::config::LedgerBackend::Scylla;
        self.dispatch.ledger.scylla = cql.clone();
        self.ingest.store_backend = herald_ingest::StoreBackend::Scylla;
        self.ingest.scylla = cql.clone();
    }

    pub fn topic_specs(&self) -> Vec<TopicSpec> {
        let topics = &self.topics;
        let prefix = self.kafka.topic_prefix.as_str();
        let dlq = self.kafka.topics().dlq();
        let catalogs = [self.kafka.topics().templates(), self.kafka.topics().dlq_redriven()];
        let changes = self.kafka.topics().directory_changes();
        let min_insync = topics.min_insync_replicas.min(topics.replication_factor);
        self.kafka
            .topics()
            .all(self.dispatch.retry.policy().tiers())
            .into_iter()
            .map(|name| {
                let short = name.strip_prefix(prefix).unwrap_or(&name);
                let retention =
                    if name == dlq { topics.dlq_retention_ms } else { topics.retention_ms };
                TopicSpec {
                    partitions: topics
                        .partitions_of
                        .get(short)
                        .copied()
                        .unwrap_or(topics.partitions),
                    replication: topics.replication_factor,
                    config: if name == changes {
                        directory_changes_config(min_insync)
                    } else if catalogs.contains(&name) {
                        // A catalog, not a log: the latest record per key, kept.
                        vec![
                            ("min.insync.replicas".into(), min_insync.to_string()),
                            ("cleanup.policy".into(), "compact".into()),
                        ]
                    } else {
                        vec![
                            ("min.insync.replicas".into(), min_insync.to_string()),
                            ("retention.ms".into(), retention.to_string()),
                        ]
                    },
                    name,
                }
            })
            .collect()
    }
}

/// `herald.directory.changes` is compacted so that an erased user's tombstone takes every
/// earlier change of theirs (addresses, tokens) out of the topic; records are changes, not
/// whole entries, so a change must stay until the enricher applied it: compaction leaves a
/// record alone for its first day, and runs within a week of a tombstone.
fn directory_changes_config(min_insync: i32) -> Vec<(String, String)> {
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    vec![
        ("min.insync.replicas".into(), min_insync.to_string()),
        ("cleanup.policy".into(), "compact".into()),
        ("min.compaction.lag.ms".into(), DAY_MS.to_string()),
        ("max.compaction.lag.ms".into(), (7 * DAY_MS).to_string()),
        ("delete.retention.ms".into(), DAY_MS.to_string()),
        ("segment.ms".into(), DAY_MS.to_string()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        HeraldConfig::default().validate().unwrap();
    }

    #[test]
    fn file_overrides_defaults_and_unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("herald.toml");
        std::fs::write(
            &file,
            "[kafka]\nbootstrap_servers = \"broker:9092\"\n[topics]\npartitions = 12\n",
        )
        .unwrap();
        let config = HeraldConfig::load(Some(&file)).unwrap();
        assert_eq!(config.kafka.bootstrap_servers, "broker:9092");
        assert_eq!(config.topics.partitions, 12);
        assert_eq!(config.topics.replication_factor, 3, "untouched keys keep their default");

        std::fs::write(&file, "[kafka]\nbootstrap_server = \"typo:9092\"\n").unwrap();
        let err = HeraldConfig::load(Some(&file)).unwrap_err().to_string();
        assert!(err.contains("bootstrap_server"), "{err}");
    }

    #[test]
    fn inconsistent_timings_are_rejected_at_start() {
        let mut config = HeraldConfig::default();
        config.kafka.consumer.drain_deadline_ms = 400_000;
        assert!(config.validate().unwrap_err().to_string().contains("drain_deadline_ms"));
    }

    #[test]
    fn the_example_configuration_with_every_provider_kind_is_valid() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/k8s/herald.toml");
        let config = HeraldConfig::load(Some(Path::new(example))).unwrap();
        let kinds: Vec<_> = config
            .dispatch
            .providers
            .values()
            .map(|p| serde_json::to_value(p).unwrap()["kind"].as_str().unwrap().to_owned())
            .collect();
        for kind in ["fcm", "apns", "jpush", "pushy", "twilio", "vonage"] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} missing from the example");
        }
        let routes = &config.enricher.region_routes;
        assert_eq!(routes.route(herald_schemas::Channel::Android, Some("cn")), "china");
    }

    #[test]
    fn routes_to_unknown_or_unfit_providers_are_rejected_at_start() {
        let mut config = HeraldConfig::default();
        let route = |names: &[&str]| {
            std::collections::BTreeMap::from([(
                "default".to_owned(),
                names.iter().map(|n| (*n).to_owned()).collect(),
            )])
        };
        config.dispatch.routes.insert("sms".into(), route(&["nobody"]));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("\"nobody\""), "{err}");
        config.dispatch.routes.insert("sms".into(), route(&["smtp"]));
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("cannot serve channel sms"), "{err}");
        config.dispatch.routes.remove("sms");
        config.dispatch.routes.insert("fax".into(), route(&["smtp"]));
        assert!(config.validate().unwrap_err().to_string().contains("\"fax\""));
    }
}
