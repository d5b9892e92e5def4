//! What the send API's tests share: the send API alone, with no enricher or dispatcher behind
//! it, on the run's broker (Apache Kafka from `infra/test.sh`, under topic prefixes of the
//! test's own; else a Tansu broker per test) and registry (Apicurio beside that Kafka, else a
//! development registry of the test's own), with its store in SQLite or on the run's CQL
//! node. What the API produced is read back from the topic.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_ingest::store::ScyllaIngestStore;
use herald_ingest::{Ingest, IngestConfig, IngestStores, StoreBackend};
use herald_runtime::KafkaConfig;
use herald_runtime::kafka::admin::{self, TopicSpec};
use herald_runtime::kafka::{AvroProducer, Producer};
use herald_schemas::{AvroCodec, NotificationRequest, RegistryConfig, Topics};
pub use herald_testkit::send_api::email_body;
use herald_testkit::{Broker, DevRegistry, SendApi};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

pub const PARTITIONS: i32 = 2;

pub struct ApiEnv {
    pub broker: Broker,
    pub kafka: KafkaConfig,
    pub registry: RegistryConfig,
    pub config: IngestConfig,
    pub dir: tempfile::TempDir,
}

impl ApiEnv {
    /// The API's topics on the run's broker, and its store in a SQLite file of its own.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            Broker::for_test(dir.path()).await.expect("Tansu starts (infra/install-tansu.sh)");
        Self::start_on(broker, dir).await
    }

    /// Like [`ApiEnv::start`], on a Tansu broker of the test's own whatever the run's broker:
    /// for a test that stops the broker.
    pub async fn on_own_broker() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            Broker::tansu(dir.path()).await.expect("Tansu starts (infra/install-tansu.sh)");
        Self::start_on(broker, dir).await
    }

    async fn start_on(broker: Broker, dir: tempfile::TempDir) -> Self {
        herald_schemas::install_tls_provider();
        let mut kafka = broker.kafka_config();
        herald_testkit::isolate(&mut kafka);
        let url = match std::env::var("HERALD_TEST_REGISTRY") {
            Ok(url) if !url.is_empty() && broker.is_kafka() => url,
            _ => {
                let dev = DevRegistry::default().spawn("127.0.0.1:0".parse().unwrap());
                format!("http://{}", dev.await.unwrap())
            }
        };
        let config =
            IngestConfig { store_path: dir.path().join("ingest.db"), ..IngestConfig::default() };
        let topics = kafka.topics();
        let specs: Vec<TopicSpec> = [topics.requests(), topics.events()]
            .into_iter()
            .map(|name| TopicSpec { name, partitions: PARTITIONS, replication: 1, config: vec![] })
            .collect();
        admin::create_topics(&kafka, &specs).await.unwrap();
        Self { broker, kafka, registry: RegistryConfig::new(url), config, dir }
    }

    /// Like [`ApiEnv::start`], with the store on the run's CQL node, in a keyspace of the
    /// test's own created as `herald migrate` creates it. `None` (skipped, saying so) without
    /// a node, unless `HERALD_REQUIRE_ENGINES` makes that a failure.
    pub async fn on_cql() -> Option<Self> {
        let cql = herald_testkit::cql::node("ingest_api")?;
        let mut env = Self::start().await;
        let session = cql.connect_creating_keyspace().await.unwrap();
        ScyllaIngestStore::create_tables(&session, cql.keyspace().unwrap()).await.unwrap();
        env.config.store_backend = StoreBackend::Scylla;
        env.config.scylla = cql;
        Some(env)
    }

    pub fn topics(&self) -> Topics {
        self.kafka.topics()
    }

    pub async fn api_key(&self) -> String {
        let stores = IngestStores::open(&self.config).await.unwrap();
        stores.clients.add("test").await.unwrap().1
    }

    /// A send API instance of its own (its own stores' handles and producer), serving on a
    /// free port until stopped.
    pub async fn serve(&self) -> RunningApi {
        let stores = IngestStores::open(&self.config).await.unwrap();
        let codec = Arc::new(AvroCodec::new(&self.registry).unwrap());
        let producer = Producer::new(&self.kafka, "herald-ingest").unwrap();
        let output = AvroProducer::new(producer, codec);
        let ingest =
            Ingest::new(&self.config, &stores, output.clone(), self.topics(), None).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = SendApi::new(format!("http://{}", listener.local_addr().unwrap()));
        let shutdown = CancellationToken::new();
        let serving = tokio::spawn(ingest.serve(listener, None, shutdown.clone()));
        RunningApi { client, shutdown, serving, output }
    }

    /// The requests the API produced within `wait`, stopping early once `until` holds.
    pub async fn requests(
        &self,
        wait: Duration,
        until: impl Fn(&[NotificationRequest]) -> bool,
    ) -> Vec<NotificationRequest> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.kafka.bootstrap_servers)
            .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let topic = self.topics().requests();
        let mut partitions = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            partitions.add_partition_offset(&topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&partitions).unwrap();
        let codec = AvroCodec::new(&self.registry).unwrap();
        let mut records = Vec::new();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !until(&records) {
            let mut payloads = Vec::new();
            while let Some(Ok(m)) = consumer.poll(Duration::ZERO) {
                payloads.push(m.payload().map(<[u8]>::to_vec));
            }
            if payloads.is_empty() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            for payload in payloads {
                records.push(codec.decode(payload.as_deref()).await.unwrap());
            }
        }
        records
    }
}

impl Drop for ApiEnv {
    fn drop(&mut self) {
        if self.broker.is_kafka() {
            let kafka = self.kafka.clone();
            // A thread of its own: the test's runtime may be the one dropping this.
            let _ = std::thread::spawn(move || herald_testkit::drop_topics(&kafka)).join();
        }
    }
}

/// A send API running in the test, and a caller of it (`api.post(..)`).
pub struct RunningApi {
    client: SendApi,
    shutdown: CancellationToken,
    serving: tokio::task::JoinHandle<std::io::Result<()>>,
    output: AvroProducer,
}

impl std::ops::Deref for RunningApi {
    type Target = SendApi;
    fn deref(&self) -> &SendApi {
        &self.client
    }
}

impl RunningApi {
    /// Stops serving after the requests in flight, and flushes what they produced.
    pub async fn stop(self) {
        self.shutdown.cancel();
        self.serving.await.unwrap().unwrap();
        self.output.producer().flush(Duration::from_secs(5)).await;
    }
}
