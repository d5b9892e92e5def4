//! What the integration tests share: the broker (Apache Kafka started once for the whole run
//! by `infra/test.sh` and found through `HERALD_TEST_KAFKA`, each test under topic and group
//! prefixes of its own; else a Tansu broker per test), the development schema registry, the
//! SMTP sink, temporary SQLite stores, and helpers to read topics.

use herald_enricher::Directory;
use std::time::{Duration, Instant};

use herald_enricher::SqliteDirectory;
use herald_runtime::kafka::admin;
use herald_schemas::{AvroCodec, Record};
use herald_testkit::Broker;
use herald_testkit::mail_sink::MailSink;
use herald_testkit::{DevRegistry, SendApi};
use herald_wiring::config::HeraldConfig;
use herald_wiring::pipeline::Pipeline;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

mod commands;
// Each test binary uses some of these.
#[allow(unused_imports)]
pub use commands::{Running, herald_command, herald_output, send_when_up, wait_until_caught_up};
#[allow(unused_imports)]
pub use herald_testkit::send_api::email_body;

pub const PARTITIONS: i32 = 2;

pub struct TestEnv {
    pub broker: Broker,
    /// The schema registry's URL: the run's Apicurio Registry beside its Kafka, else a
    /// development registry of the test's own.
    pub registry: String,
    pub mail: MailSink,
    pub dir: tempfile::TempDir,
    pub config: HeraldConfig,
}

pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,librdkafka=error".into()),
        )
        .with_test_writer()
        .try_init();
}

impl TestEnv {
    /// A registry, SMTP sink and stores of its own, with topics and consumer groups under
    /// prefixes of its own on the run's broker (see [`Broker::for_test`]).
    pub async fn start() -> Self {
        init_logging();
        herald_schemas::install_tls_provider();
        let dir = tempfile::tempdir().unwrap();
        let broker =
            Broker::for_test(dir.path()).await.expect("Tansu starts (infra/install-tansu.sh)");
        let kafka = broker.kafka_config();
        let registry = match std::env::var("HERALD_TEST_REGISTRY") {
            Ok(url) if !url.is_empty() && broker.is_kafka() => url,
            _ => {
                let dev = DevRegistry::default().spawn("127.0.0.1:0".parse().unwrap());
                format!("http://{}", dev.await.unwrap())
            }
        };
        let mail = MailSink::start("127.0.0.1:0".parse().unwrap()).unwrap();
        let mut config = HeraldConfig { kafka, ..HeraldConfig::default() };
        herald_testkit::isolate(&mut config.kafka);
        config.kafka.consumer.drain_deadline_ms = 3_000;
        config.schema_registry.url = registry.clone();
        config.topics.partitions = PARTITIONS;
        config.topics.for_single_broker();
        config.dispatch.retry.delays_ms = vec![1_000, 2_000];
        config.dispatch.ledger.path = dir.path().join("ledger.db");
        config.ingest.store_path = dir.path().join("ingest.db");
        config.enricher.directory_path = dir.path().join("directory.db");
        config.dispatch.email.smtp.host = mail.addr().ip().to_string();
        config.dispatch.email.smtp.port = mail.addr().port();
        config.validate().unwrap();
        admin::create_topics(&config.kafka, &config.topic_specs()).await.unwrap();
        Self { broker, registry, mail, dir, config }
    }

    /// Like [`TestEnv::start`], on Apache Kafka only: for what Tansu cannot do. `None` (the
    /// test is skipped, saying so) when the run started no Kafka, unless
    /// `HERALD_REQUIRE_ENGINES` makes that a failure.
    /// The Tansu leg of a run (`HERALD_TEST_BROKER=tansu`) skips it: its Kafka leg ran it.
    pub async fn on_kafka() -> Option<Self> {
        if std::env::var("HERALD_TEST_BROKER").is_ok_and(|b| b == "tansu") {
            eprintln!("skipping: this test runs on Apache Kafka, and this is the Tansu leg");
            return None;
        }
        herald_testkit::required("HERALD_TEST_KAFKA", "Apache Kafka")?;
        Some(Self::start().await)
    }

    /// The name of the role consumer group `name` (`enricher`, `dispatch-email`) here.
    pub fn group(&self, name: &str) -> String {
        self.config.kafka.group(name)
    }

    /// Like [`TestEnv::start`], with every store on the run's CQL node (the enricher's
    /// directory, the delivery ledger and the ingest store, in a keyspace of the test's own,
    /// created as `herald migrate` creates it). `None` (skipped, saying so) without a node,
    /// unless `HERALD_REQUIRE_ENGINES` makes that a failure.
    pub async fn on_cql() -> Option<Self> {
        let cql = herald_testkit::cql::node("herald_e2e")?;
        let mut env = Self::start().await;
        env.config.put_stores_on(&cql);
        herald_wiring::migrate::migrate(&env.config).await.unwrap();
        Some(env)
    }

    pub fn stores_on_cql(&self) -> bool {
        self.config.enricher.directory_backend == herald_enricher::DirectoryBackend::Scylla
    }

    /// The directory the test's enricher reads, on whichever store it is.
    pub async fn directory(&self) -> TestDirectory {
        if self.stores_on_cql() {
            let directory = herald_enricher::ScyllaDirectory::connect(&self.config.enricher.scylla);
            TestDirectory::Cql(Box::new(directory.await.unwrap()))
        } else {
            TestDirectory::Sqlite(
                SqliteDirectory::open(&self.config.enricher.directory_path).unwrap(),
            )
        }
    }

    pub async fn api_key(&self) -> String {
        let stores = herald_ingest::IngestStores::open(&self.config.ingest).await.unwrap();
        stores.clients.add("test").await.unwrap().1
    }

    pub fn codec(&self) -> AvroCodec {
        AvroCodec::new(&self.config.schema_registry.resolve().unwrap()).unwrap()
    }

    pub fn topics(&self) -> herald_schemas::Topics {
        self.config.kafka.topics()
    }

    /// Starts ingest, enricher and email dispatcher; returns the running pipeline.
    pub async fn pipeline(&self) -> RunningPipeline {
        self.pipeline_with(&[]).await
    }

    /// Like [`TestEnv::pipeline`], with dispatchers for `channels` besides email.
    pub async fn pipeline_with(&self, channels: &[herald_schemas::Channel]) -> RunningPipeline {
        self.pipeline_roles(true, channels).await
    }

    /// The send API, an enricher if `enricher`, and dispatchers for email and `channels`.
    pub async fn pipeline_roles(
        &self,
        enricher: bool,
        channels: &[herald_schemas::Channel],
    ) -> RunningPipeline {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let shutdown = CancellationToken::new();
        let mut all = vec![herald_schemas::Channel::Email];
        all.extend_from_slice(channels);
        let given = herald_wiring::roles::GivenProviders::new();
        let roles = herald_wiring::pipeline::Roles { enricher, channels: &all };
        let config = self.config.clone();
        let pipeline =
            Pipeline::start_roles(config, listener, roles, given, shutdown.clone()).await.unwrap();
        let client = SendApi::new(format!("http://{}", pipeline.api_addr()));
        RunningPipeline { pipeline: Some(pipeline), client }
    }

    /// A key that may also read and change the directory.
    pub async fn directory_key(&self) -> String {
        let stores = herald_ingest::IngestStores::open(&self.config.ingest).await.unwrap();
        let policy = herald_ingest::ClientPolicy {
            directory: Some(herald_ingest::DirectoryAccess::Write),
            ..herald_ingest::ClientPolicy::default()
        };
        stores.clients.add_with("directory", policy).await.unwrap().1
    }

    /// A reader of every partition of `topic` from the beginning.
    pub fn reader(&self, topic: &str) -> TopicReader {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", self.broker.bootstrap_servers())
            .set("group.id", format!("reader-{}", uuid::Uuid::now_v7()))
            .set("enable.auto.commit", "false")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            tpl.add_partition_offset(topic, p, Offset::Beginning).unwrap();
        }
        consumer.assign(&tpl).unwrap();
        TopicReader { consumer, read: Vec::new() }
    }

    /// Every record of `topic` that arrives within `wait`, stopping early once `until` holds.
    pub async fn read_topic(
        &self,
        topic: &str,
        wait: Duration,
        until: impl Fn(&[OwnedMessage]) -> bool,
    ) -> Vec<OwnedMessage> {
        let mut reader = self.reader(topic);
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !until(&reader.read) {
            reader.poll_some().await;
        }
        reader.read
    }

    /// Decoded records of `topic` read within `wait`, stopping early once `until` holds.
    pub async fn read_records<R: Record>(
        &self,
        topic: &str,
        wait: Duration,
        until: impl Fn(&[R]) -> bool,
    ) -> Vec<R> {
        let codec = self.codec();
        let mut reader = self.reader(topic);
        let mut records = Vec::new();
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline && !until(&records) {
            let before = reader.read.len();
            reader.poll_some().await;
            for m in &reader.read[before..] {
                records.push(codec.decode::<R>(m.payload()).await.unwrap());
            }
        }
        records
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !self.broker.is_kafka() {
            return;
        }
        let kafka = self.config.kafka.clone();
        // A thread of its own: the test's runtime may be the one dropping this.
        let _ = std::thread::spawn(move || herald_testkit::drop_topics(&kafka)).join();
    }
}

pub struct TopicReader {
    consumer: BaseConsumer,
    pub read: Vec<OwnedMessage>,
}

impl TopicReader {
    /// Takes what is there now, or waits a little.
    pub async fn poll_some(&mut self) {
        let mut got = false;
        while let Some(result) = self.consumer.poll(Duration::ZERO) {
            if let Ok(m) = result {
                self.read.push(m.detach());
                got = true;
            }
        }
        if !got {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The pipeline running in the test, and a caller of its send API (`pipeline.post(..)`).
pub struct RunningPipeline {
    pipeline: Option<Pipeline>,
    client: SendApi,
}

impl std::ops::Deref for RunningPipeline {
    type Target = SendApi;
    fn deref(&self) -> &SendApi {
        &self.client
    }
}

impl RunningPipeline {
    pub async fn stop(mut self) {
        if let Some(p) = self.pipeline.take() {
            p.stop().await.unwrap();
        }
    }
}

pub async fn add_user(env: &TestEnv, user_id: &str, email: &str) {
    env.directory()
        .await
        .upsert_user(herald_enricher::User {
            user_id: user_id.into(),
            email: Some(email.into()),
            phone: None,
            locale: None,
            timezone: None,
            region: None,
            quiet_hours: None,
        })
        .await
        .unwrap();
}

/// The events on `herald.events` once each of `ids` has one of `kind`.
pub async fn events_until_all(
    env: &TestEnv,
    ids: &[String],
    kind: herald_schemas::EventKind,
) -> Vec<herald_schemas::DeliveryEvent> {
    let wanted = ids.to_vec();
    env.read_records::<herald_schemas::DeliveryEvent>(
        &env.topics().events(),
        Duration::from_secs(40),
        move |e: &[herald_schemas::DeliveryEvent]| {
            wanted.iter().all(|id| e.iter().any(|e| &e.notification_id == id && e.kind == kind))
        },
    )
    .await
}

/// An active device of `user` (who must exist) on `platform` with push `token`.
pub async fn add_device(
    env: &TestEnv,
    user: &str,
    platform: herald_enricher::Platform,
    token: &str,
    app_id: Option<&str>,
) {
    let device = herald_enricher::Device {
        device_id: format!("{user}-{}", app_id.unwrap_or("phone")),
        platform,
        token: token.into(),
        app_id: app_id.map(str::to_owned),
        active: true,
    };
    env.directory().await.upsert_device(user, device).await.unwrap();
}

/// Runs `herald chaos <args> --notifications <n>` to completion and checks what every fault
/// run must hold: every notification sent (at least `n`: broker faults stretch the run
/// until their plan has run through), none lost, none sent twice outside a delivery whose
/// claim a dispatcher took over (its outcome unknown). Returns the JSON report and the
/// printed one.
pub fn chaos_run(args: &[&str], notifications: u64) -> (serde_json::Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("chaos")
        .args(args)
        .args(["--notifications", &notifications.to_string()])
        .args(["--data-dir", dir.path().join("run").to_str().unwrap()])
        .args(["--json", report.to_str().unwrap()])
        .env_remove("HERALD_CONFIG")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let issued = report["notifications"].as_u64().unwrap();
    assert!(issued >= notifications, "{stdout}");
    assert_eq!(report["sent"], issued, "{stdout}");
    assert_eq!(report["lost"], 0, "{stdout}");
    assert_eq!(
        report["delivered"].as_u64().unwrap() + report["dead_lettered"].as_u64().unwrap(),
        issued,
        "{stdout}"
    );
    assert_eq!(
        report["unexplained_duplicates"], 0,
        "a duplicate only where a killed dispatcher's claim was taken over: {stdout}"
    );
    (report, stdout)
}

/// A directory on either store, for the tests' own reads and writes.
pub enum TestDirectory {
    Sqlite(SqliteDirectory),
    Cql(Box<herald_enricher::ScyllaDirectory>),
}

/// Calls `$method` on whichever directory `$self` holds.
macro_rules! either {
    ($self:ident . $method:ident ( $($arg:expr),* )) => {
        match $self {
            TestDirectory::Sqlite(d) => d.$method($($arg),*).await,
            TestDirectory::Cql(d) => d.$method($($arg),*).await,
        }
    };
}

impl Directory for TestDirectory {
    async fn upsert_user(
        &self,
        user: herald_enricher::User,
    ) -> Result<(), herald_enricher::DirectoryError> {
        either!(self.upsert_user(user))
    }
    async fn upsert_device(
        &self,
        user_id: &str,
        device: herald_enricher::Device,
    ) -> Result<(), herald_enricher::DirectoryError> {
        either!(self.upsert_device(user_id, device))
    }
    async fn set_preference(
        &self,
        user_id: &str,
        preference: herald_enricher::Preference,
    ) -> Result<(), herald_enricher::DirectoryError> {
        either!(self.set_preference(user_id, preference))
    }
    async fn put_template(
        &self,
        template_id: &str,
        variants: Vec<herald_enricher::TemplateVariant>,
    ) -> Result<(), herald_enricher::DirectoryError> {
        either!(self.put_template(template_id, variants))
    }
    async fn user(
        &self,
        user_id: &str,
    ) -> Result<Option<herald_enricher::User>, herald_enricher::DirectoryError> {
        either!(self.user(user_id))
    }
    async fn devices(
        &self,
        user_id: &str,
    ) -> Result<Vec<herald_enricher::Device>, herald_enricher::DirectoryError> {
        either!(self.devices(user_id))
    }
    async fn preferences(
        &self,
        user_id: &str,
    ) -> Result<Vec<herald_enricher::Preference>, herald_enricher::DirectoryError> {
        either!(self.preferences(user_id))
    }
    async fn template(
        &self,
        template_id: &str,
    ) -> Result<Vec<herald_enricher::TemplateVariant>, herald_enricher::DirectoryError> {
        either!(self.template(template_id))
    }
    async fn take_quota(
        &self,
        counter: &herald_enricher::directory::QuotaCounter,
        notification_id: &str,
        limit: u32,
    ) -> Result<bool, herald_enricher::DirectoryError> {
        either!(self.take_quota(counter, notification_id, limit))
    }
    async fn token_owners(
        &self,
        platform: herald_enricher::Platform,
        token: &str,
    ) -> Result<Vec<(String, String)>, herald_enricher::DirectoryError> {
        either!(self.token_owners(platform, token))
    }
    async fn register_device(
        &self,
        user_id: &str,
        device: herald_enricher::Device,
    ) -> Result<Vec<(String, String)>, herald_enricher::DirectoryError> {
        either!(self.register_device(user_id, device))
    }
    async fn ensure_user(&self, user_id: &str) -> Result<(), herald_enricher::DirectoryError> {
        either!(self.ensure_user(user_id))
    }
    async fn remove_device(
        &self,
        user_id: &str,
        device_id: &str,
    ) -> Result<bool, herald_enricher::DirectoryError> {
        either!(self.remove_device(user_id, device_id))
    }
    async fn delete_user(&self, user_id: &str) -> Result<bool, herald_enricher::DirectoryError> {
        either!(self.delete_user(user_id))
    }
    async fn delete_template(
        &self,
        template_id: &str,
    ) -> Result<bool, herald_enricher::DirectoryError> {
        either!(self.delete_template(template_id))
    }
    async fn template_ids(&self) -> Result<Vec<String>, herald_enricher::DirectoryError> {
        either!(self.template_ids())
    }
    async fn progress(&self) -> Result<Vec<(String, i32, i64)>, herald_enricher::DirectoryError> {
        either!(self.progress())
    }
    async fn set_progress(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
    ) -> Result<(), herald_enricher::DirectoryError> {
        either!(self.set_progress(topic, partition, next_offset))
    }
}
