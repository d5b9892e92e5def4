//! Configuration sections shared by every role. Each is a serde struct that rejects unknown
//! fields; defaults live in the `Default` impls here and nowhere else.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a secret comes from: never the config file itself.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SecretSource {
    /// Name of an environment variable holding the secret.
    Env(String),
    /// Path of a file whose content (trailing newline trimmed) is the secret.
    File(String),
}

impl fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::Env(name) => write!(f, "env:{name}"),
            SecretSource::File(path) => write!(f, "file:{path}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} (named as a secret source) is not set")]
    MissingEnv(String),
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
}

impl SecretSource {
    pub fn read(&self) -> Result<String, SecretError> {
        match self {
            SecretSource::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::MissingEnv(name.clone()))
            }
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_owned())
                .map_err(|e| SecretError::File { path: path.clone(), reason: e.to_string() }),
        }
    }
}

/// Kafka connection settings shared by every client a role creates.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Prefix of every topic name (`herald.` gives `herald.requests`, ...).
    pub topic_prefix: String,
    /// Prefix of every consumer group a role joins (`herald-` gives `herald-enricher`,
    /// `herald-dispatch-email`, ...): two installations sharing a cluster differ in both.
    pub group_prefix: String,
    /// librdkafka properties applied to every client, passed through unchanged:
    /// `security.protocol`, `sasl.mechanism`, `sasl.username`, `ssl.ca.location`, ...
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties whose values are secrets (`sasl.password`, `ssl.key.password`),
    /// read from the environment or a file at start-up.
    pub secret_properties: BTreeMap<String, SecretSource>,
    /// Extra librdkafka properties for producers only.
    pub producer_properties: BTreeMap<String, String>,
    /// How long a role waits at start-up for the cluster to answer before it exits with the
    /// reason; refused credentials and failed TLS handshakes end the wait at once.
    pub connect_timeout_ms: u64,
    pub consumer: ConsumerTuning,
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let redacted = self.redacted();
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("topic_prefix", &self.topic_prefix)
            .field("group_prefix", &self.group_prefix)
            .field("properties", &redacted.properties)
            .field("secret_properties", &self.secret_properties)
            .field("producer_properties", &redacted.producer_properties)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("consumer", &self.consumer)
            .finish()
    }
}

/// What replaces a secret-looking property's value when the configuration is shown.
pub const REDACTED: &str = "<redacted>";

impl KafkaConfig {
    /// This configuration with the values of secret-looking plain properties replaced by
    /// [`REDACTED`], to be shown: plain properties are not secret by contract, but people
    /// put passwords anywhere. (`secret_properties` only name where secrets are.)
    pub fn redacted(&self) -> KafkaConfig {
        let redact = |properties: &BTreeMap<String, String>| {
            properties
                .iter()
                .map(|(k, v)| {
                    let secret =
                        ["password", "secret", "key.pem", "token"].iter().any(|s| k.contains(s));
                    (k.clone(), if secret { REDACTED.to_owned() } else { v.clone() })
                })
                .collect()
        };
        KafkaConfig {
            properties: redact(&self.properties),
            producer_properties: redact(&self.producer_properties),
            ..self.clone()
        }
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topic_prefix: "herald.".into(),
            group_prefix: "herald-".into(),
            properties: BTreeMap::new(),
            secret_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
            connect_timeout_ms: 30_000,
            consumer: ConsumerTuning::default(),
        }
    }
}

impl KafkaConfig {
    pub fn topics(&self) -> herald_schemas::Topics {
        herald_schemas::Topics::new(self.topic_prefix.clone())
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The consumer group of a role's consumer `name` (`enricher`, `dispatch-email`, ...).
    pub fn group(&self, name: &str) -> String {
        format!("{}{name}", self.group_prefix)
    }

    /// Every client property (plain and secret), secrets resolved now.
    pub fn client_properties(&self) -> Result<BTreeMap<String, String>, SecretError> {
        let mut all = self.properties.clone();
        for (key, source) in &self.secret_properties {
            all.insert(key.clone(), source.read()?);
        }
        all.insert("bootstrap.servers".into(), self.bootstrap_servers.clone());
        Ok(all)
    }

    /// Consumer-group timings that make rebalances finish in seconds on Tansu (measured in
    /// ../shared/notes/tansu.md); used by `herald dev` and the tests.
    pub fn with_dev_timings(mut self) -> Self {
        self.consumer.session_timeout_ms = 6_000;
        self.consumer.heartbeat_interval_ms = 1_000;
        self.consumer.max_poll_interval_ms = 10_000;
        self.consumer.drain_deadline_ms = 5_000;
        self
    }
}

/// How consumer groups agree on who reads which partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupProtocol {
    /// Members join, the group stops, a leader assigns: every broker speaks it (Tansu, Kafka
    /// before 4.0, most managed services).
    Classic,
    /// KIP-848 (Apache Kafka 4.0 and later): the broker assigns partitions to members one by
    /// one and keeps members through a coordinator's failover, where every member of a
    /// classic group revokes its partitions and rejoins
    /// (`herald chaos --broker kafka --faults brokers` compares them). Session and heartbeat
    /// timings are then the broker's (`group.consumer.*`).
    Consumer,
}

/// Consumer behaviour. The defaults are Apache Kafka production values; `herald dev` and the
/// tests shorten the group timings (see [`KafkaConfig::with_dev_timings`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerTuning {
    pub group_protocol: GroupProtocol,
    /// A name for this process that is the same after it restarts and unique among the
    /// processes of its role (a pod's name: a container restarted in its pod keeps it).
    /// Classic groups: each group's member joins as a static member under this name
    /// (`group.instance.id`), so a process killed and started again takes its partitions
    /// back at once, where a new member would wait for the old one's session to end. It also
    /// leaves the group without a rebalance on shutdown: its partitions wait for it for
    /// `session_timeout_ms`. Consumer groups do not use it: a restart under a name whose
    /// previous member did not leave is refused until that member's session ends, the same
    /// wait a new member has (see docs/operating.md, "A crashed role").
    pub instance_id: Option<String>,
    /// Classic groups only (the broker decides for consumer groups): how long a member that
    /// stopped heartbeating (killed, partitioned off) keeps its partitions.
    pub session_timeout_ms: u32,
    /// Classic groups only.
    pub heartbeat_interval_ms: u32,
    pub max_poll_interval_ms: u32,
    pub auto_commit_interval_ms: u32,
    /// Records fetched but not yet finished, across all partitions of one consumer; above
    /// this the consumer pauses fetching, and resumes at half. A pause drops what librdkafka
    /// had fetched ahead, so the half left must last until the next fetch answers (Tansu
    /// holds every empty fetch for its whole wait): too low a bound caps throughput there
    /// (`herald bench dispatch` and `herald bench enrich` show by how much).
    pub max_in_flight: usize,
    /// Key queues of a partition, and the most records of it started and not yet
    /// acknowledged; records with the same key always go to the same key queue, so they
    /// start in order. A key queue may start a key's next records while earlier ones'
    /// outputs await acknowledgement (see `Handler::start`) but only within this
    /// partition-wide bound, which keeps the producer's memory in check: more queues buy
    /// throughput with memory (`herald bench enrich` prints both).
    pub key_queues_per_partition: usize,
    /// Records of one key a key queue starts while earlier ones' outputs await acknowledgement
    /// (handlers that split their work, such as the enricher's). 1 keeps a key to one
    /// record per produce round trip; on a broker shared by
    /// the API and the enricher (`herald dev`), that leaves the broker to the API while one
    /// busy user's requests queue up.
    pub pipelined_per_key: usize,
    /// How often librdkafka reports statistics (`herald_consumer_lag`); 0 turns them off.
    pub statistics_interval_ms: u32,
    /// How long a revoked partition (rebalance or shutdown) may take to finish its in-flight
    /// records before they are abandoned to the next owner.
    pub drain_deadline_ms: u64,
    /// Extra librdkafka properties for consumers only.
    pub properties: BTreeMap<String, String>,
}

impl Default for ConsumerTuning {
    fn default() -> Self {
        Self {
            group_protocol: GroupProtocol::Classic,
            instance_id: None,
            // Kafka's 45 s default leaves a crashed member's partitions unread that long;
            // heartbeats every 3 s keep a live member's session through a few lost ones.
            session_timeout_ms: 10_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            auto_commit_interval_ms: 1_000,
            max_in_flight: 8_192,
            key_queues_per_partition: 256,
            pipelined_per_key: 32,
            statistics_interval_ms: 15_000,
            drain_deadline_ms: 10_000,
            properties: BTreeMap::new(),
        }
    }
}

impl ConsumerTuning {
    pub fn drain_deadline(&self) -> Duration {
        Duration::from_millis(self.drain_deadline_ms)
    }
}

/// The schema registry: any Confluent-compatible one in production; `herald dev` serves a
/// development registry and points this at it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    pub url: String,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    pub timeout_ms: u64,
    /// A private CA's certificates (PEM), trusted besides the public roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM) and its key, for a registry that asks for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The proxy to reach the registry through; absent: `HTTPS_PROXY`/`HTTP_PROXY` and
    /// `NO_PROXY` from the environment.
    pub proxy: Option<String>,
    /// Whether roles register Herald's schemas at start-up. Off, they only look them up, and
    /// `herald schemas register` (with a login that may write) registers them.
    pub auto_register: bool,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8081".into(),
            username: None,
            password: None,
            timeout_ms: 10_000,
            ca_file: None,
            cert_file: None,
            key_file: None,
            proxy: None,
            auto_register: true,
        }
    }
}

impl RegistrySettings {
    /// A setting that cannot work, named: a certificate without its key or the reverse.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err(
                "schema_registry.cert_file and key_file go together: set both or neither".into()
            );
        }
        Ok(())
    }

    pub fn resolve(&self) -> Result<herald_schemas::RegistryConfig, SecretError> {
        let mut config = herald_schemas::RegistryConfig::new(self.url.clone());
        config.timeout = Duration::from_millis(self.timeout_ms);
        config.ca_file.clone_from(&self.ca_file);
        config.identity = self.cert_file.clone().zip(self.key_file.clone());
        config.proxy.clone_from(&self.proxy);
        config.auto_register = self.auto_register;
        if let Some(user) = &self.username {
            let password = self.password.as_ref().map(SecretSource::read).transpose()?;
            config.basic_auth = Some((user.clone(), password.unwrap_or_default()));
        }
        Ok(config)
    }
}
