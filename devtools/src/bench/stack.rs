//! Where a benchmark runs: its broker (Tansu, Apache Kafka started for it, or a running
//! cluster), a development registry, and its stores (SQLite, or a CQL node), all under a
//! topic and group prefix of the run's own.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use herald_enricher::ScyllaDirectory;
use herald_enricher::{Device, DirectoryBackend, Platform, SqliteDirectory, User};
use herald_testkit::DevRegistry;
use herald_testkit::cql::{self, CassandraNode};
use herald_testkit::{Broker, BrokerChoice, BrokerStorage, KafkaCluster, TansuBroker};
use serde::Serialize;

use herald_wiring::config::HeraldConfig;
use herald_wiring::directory::{ImportFormat, ImportOptions};

/// The broker and stores of a benchmark, on its command line.
#[derive(clap::Args, Debug, Clone)]
pub struct StackArgs {
    /// The broker: tansu (herald dev's) or kafka (one Apache Kafka node started by
    /// infra/engines/kafka.sh).
    #[arg(long, value_enum, default_value = "tansu")]
    pub broker: BrokerChoice,
    /// A running Kafka cluster's bootstrap servers, instead of starting a broker.
    #[arg(long, conflicts_with = "broker")]
    pub bootstrap_servers: Option<String>,
    /// Tansu's storage: sqlite (batching) or memory (one record per produce batch).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub storage: BrokerStorage,
    /// Where the directory and the delivery ledger live: sqlite, or cql (the node of
    /// --cql-node, else Apache Cassandra started by infra/engines/cassandra.sh).
    #[arg(long, value_enum, default_value = "sqlite")]
    pub stores: StoreChoice,
    /// A running CQL node (host:port), for --stores cql; its TLS and login settings from
    /// the HERALD_TEST_CQL_* variables infra/engines/cassandra.sh writes to its env file.
    #[arg(long)]
    pub cql_node: Option<String>,
    /// How long to run traffic through the broker before measuring anything (e2e: the
    /// whole pipeline at full speed; enrich and dispatch: raw copies). By default 20 s on
    /// Apache Kafka, whose JIT compiler otherwise takes a large share of the cores during
    /// the first measured runs (a broker users run has long finished compiling), and none
    /// on Tansu.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub broker_warmup: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreChoice {
    Sqlite,
    Cql,
}

/// How long loading the directory took through `herald directory import`'s path.
#[derive(Debug, Clone, Serialize)]
pub struct Loaded {
    pub users: usize,
    pub devices: usize,
    pub records: usize,
    pub seconds: f64,
    pub records_per_second: f64,
}

/// A benchmark's running stack and its configuration.
#[derive(Debug)]
pub struct Stack {
    pub config: HeraldConfig,
    /// How long to warm the broker up before measuring.
    pub warmup: Duration,
    broker: Broker,
    cql: Option<CassandraNode>,
}

impl Stack {
    /// Starts the broker (and a CQL node, if asked and none is given) with its data in `dir`,
    /// a development registry, and a configuration for them: topics under `prefix`, 4
    /// partitions, the roles tuned as `tuning` says, a cache holding `users` users.
    pub async fn start(
        args: &StackArgs,
        tuning: &HeraldConfig,
        dir: &Path,
        (prefix, users): (&str, usize),
    ) -> anyhow::Result<Self> {
        let broker = match (&args.bootstrap_servers, args.broker) {
            (Some(servers), _) => Broker::Existing(servers.clone()),
            (None, BrokerChoice::Tansu) => {
                let storage = args.storage.in_dir(dir);
                let log = dir.join("tansu.log");
                Broker::Tansu(Box::new(TansuBroker::start(None, storage, Some(&log)).await?))
            }
            (None, BrokerChoice::Kafka) => Broker::Kafka(Arc::new(
                KafkaCluster::start(&dir.join("kafka"), 1)
                    .await
                    .context("starting Apache Kafka (infra/engines/kafka.sh)")?,
            )),
        };
        let registry = DevRegistry::default().spawn("127.0.0.1:0".parse()?).await?;
        let mut config = HeraldConfig { kafka: broker.kafka_config(), ..HeraldConfig::default() };
        config.kafka.consumer = tuning.kafka.consumer.clone();
        config.kafka.producer_properties.extend(tuning.kafka.producer_properties.clone());
        let run = format!("{}{}", prefix.trim_end_matches('.'), std::process::id());
        config.kafka.topic_prefix = format!("{run}.");
        config.kafka.group_prefix = format!("{run}-");
        config.schema_registry.url = format!("http://{registry}");
        config.topics.partitions = 4;
        config.topics.for_single_broker();
        config.enricher.cache_max_entries = u64::try_from(users * 2).unwrap_or(u64::MAX);
        config.enricher.directory_path = dir.join("directory.db");
        config.dispatch.ledger.path = dir.join("ledger.db");
        let warmup = args.broker_warmup.unwrap_or(if broker.is_kafka() {
            Duration::from_secs(20)
        } else {
            Duration::ZERO
        });
        let mut stack = Self { config, warmup, broker, cql: None };
        if args.stores == StoreChoice::Cql {
            let keyspace = run.replace(['.', '-'], "_");
            let stores = match &args.cql_node {
                Some(node) => cql::at(node, &keyspace),
                None => {
                    let started = CassandraNode::start(&dir.join("cassandra"))
                        .await
                        .context("starting Apache Cassandra (infra/engines/cassandra.sh)")?;
                    let config = started.config(&keyspace);
                    stack.cql = Some(started);
                    config
                }
            };
            stack.config.put_stores_on(&stores);
            herald_wiring::migrate::migrate(&stack.config)
                .await
                .context("creating the CQL tables")?;
        }
        Ok(stack)
    }

    /// The broker and stores, for a report's first line.
    pub fn describe(&self) -> String {
        let stores = match self.config.enricher.directory_backend {
            DirectoryBackend::Sqlite => "SQLite".to_owned(),
            DirectoryBackend::Scylla => {
                format!("the CQL node at {}", self.config.enricher.scylla.nodes.join(","))
            }
        };
        let warmed = match self.warmup.as_secs() {
            0 => String::new(),
            secs => format!(", warmed up for {secs} s"),
        };
        format!("broker: {}{warmed}; directory and ledger: {stores}", self.broker.name())
    }

    /// Processes of the stack besides the benchmark's, for CPU and memory accounting.
    pub fn processes(&self) -> Vec<(String, u32)> {
        let mut all: Vec<(String, u32)> = self
            .broker
            .pids()
            .into_iter()
            .map(|pid| (format!("broker ({})", self.broker.name()), pid))
            .collect();
        if let Some(pid) = self.cql.as_ref().and_then(CassandraNode::pid) {
            all.push(("CQL node (cassandra)".to_owned(), pid));
        }
        all
    }

    pub async fn stop(self) {
        self.broker.stop().await;
        drop(self.cql);
    }

    /// Loads `users` deterministic users (1 to 3 devices each, an address and a phone) into
    /// the configured directory through `herald directory import`'s path, from a JSON lines
    /// file written in `dir`.
    pub async fn load_directory(&self, dir: &Path, users: usize) -> anyhow::Result<Loaded> {
        let file = dir.join("directory.jsonl");
        let devices = write_directory(&file, users).context("writing the directory file")?;
        let options = ImportOptions { format: ImportFormat::Jsonl, kind: None };
        let hidden = indicatif::ProgressBar::hidden();
        let enricher = &self.config.enricher;
        let report = match enricher.directory_backend {
            DirectoryBackend::Sqlite => {
                let directory = SqliteDirectory::open(&enricher.directory_path)?;
                herald_wiring::directory::import_direct(
                    Arc::new(directory),
                    &file,
                    options,
                    &hidden,
                )
                .await?
            }
            DirectoryBackend::Scylla => {
                let directory = ScyllaDirectory::connect(&enricher.scylla).await?;
                herald_wiring::directory::import_direct(
                    Arc::new(directory),
                    &file,
                    options,
                    &hidden,
                )
                .await?
            }
        };
        anyhow::ensure!(report.refused_total == 0, "the directory file has refused records");
        let _ = std::fs::remove_file(&file);
        let seconds = report.elapsed.as_secs_f64().max(1e-9);
        Ok(Loaded {
            users,
            devices,
            records: report.read,
            seconds,
            records_per_second: report.read as f64 / seconds,
        })
    }
}

/// User `u{i}` with 1 to 3 devices, an address and a phone.
pub(crate) fn user(i: usize) -> (User, Vec<Device>) {
    let user = User {
        user_id: format!("u{i}"),
        email: Some(format!("u{i}@bench.test")),
        phone: Some(format!("+14152{:06}", i % 1_000_000)),
        locale: Some("en-US".into()),
        timezone: Some("America/New_York".into()),
        region: Some(if i.is_multiple_of(10) { "CN" } else { "US" }.into()),
        quiet_hours: None,
    };
    let devices = (0..=i % 3)
        .map(|d| Device {
            device_id: format!("d{d}"),
            platform: if d % 2 == 0 { Platform::Android } else { Platform::Ios },
            token: format!("{:064x}", i * 3 + d),
            app_id: None,
            active: true,
        })
        .collect();
    (user, devices)
}

/// Writes the directory of `users` users as JSON lines; how many devices they have.
pub(crate) fn write_directory(file: &Path, users: usize) -> std::io::Result<usize> {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    let mut devices = 0;
    for i in 0..users {
        let (user, owned) = user(i);
        let line = serde_json::json!({
            "kind": "user", "user_id": user.user_id, "email": user.email, "phone": user.phone,
            "locale": user.locale, "timezone": user.timezone, "region": user.region,
        });
        writeln!(out, "{line}")?;
        for device in owned {
            let line = serde_json::json!({
                "kind": "device", "user_id": user.user_id, "device_id": device.device_id,
                "platform": device.platform.as_str(), "token": device.token,
            });
            writeln!(out, "{line}")?;
            devices += 1;
        }
    }
    out.flush()?;
    Ok(devices)
}

/// A role of its own, configured by `config_file`, logging to `log`.
pub(crate) fn spawn_role(config_file: &Path, args: &[&str], log: &Path) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the herald binary")?;
    Command::new(exe)
        .args(args)
        .env("HERALD_CONFIG", config_file)
        .env("RUST_LOG", "warn,librdkafka=error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("starting herald {args:?}"))
}

/// A role's process, killed when dropped.
pub(crate) struct Killed(pub(crate) Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
