//! `herald dev`: the whole pipeline on one machine with no external services: a Tansu
//! broker (child process), the development schema registry, the SQLite stores seeded with
//! demo users, the send API, the enricher, the email dispatcher, and an SMTP sink whose
//! mailbox is readable over HTTP.

pub mod seed;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::Json;
use axum::routing::get;
use std::collections::BTreeMap;
use std::sync::Arc;

use herald_dispatchers::Provider;
use herald_dispatchers::config::{ProviderConfig, ProviderLimits, SmtpTls};
use herald_dispatchers::providers::sandbox::SandboxSettings;
use herald_dispatchers::providers::sandbox::{Recordings, SandboxProvider};
use herald_enricher::DirectoryBackend;
use herald_enricher::directory::AnyDirectory;
use herald_ingest::IngestStores;
use herald_runtime::kafka::admin;
use herald_schemas::Channel;
use herald_schemas::Lane;
use herald_testkit::DevRegistry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use herald_testkit::mail_sink::{MailSink, SinkOptions};
use herald_testkit::{Storage, TansuBroker};
use herald_wiring::config::HeraldConfig;
use herald_wiring::pipeline::Pipeline;
use herald_wiring::roles::GivenProviders;

/// `herald dev`. A port already in use is replaced by a free one (the banner shows the
/// ports in use); 0 asks for a free one.
#[derive(Debug, Clone, clap::Args)]
pub struct DevOptions {
    #[arg(long, default_value = ".herald/dev")]
    pub data_dir: PathBuf,
    #[arg(long, default_value_t = 8080)]
    pub api_port: u16,
    /// The Tansu broker's port.
    #[arg(long, default_value_t = 9092)]
    pub broker_port: u16,
    #[arg(long, default_value_t = 8081)]
    pub registry_port: u16,
    #[arg(long, default_value_t = 2525)]
    pub smtp_port: u16,
    /// The mailbox (and push/SMS sandbox) page.
    #[arg(long, default_value_t = 8025)]
    pub mailbox_port: u16,
    /// Where /healthz, /readyz and the process's /metrics are served, apart from the API.
    #[arg(long, default_value_t = 9090)]
    pub ops_port: u16,
    /// Use this Kafka cluster instead of starting Tansu.
    #[arg(long)]
    pub bootstrap_servers: Option<String>,
}

/// Binds the preferred port on loopback, or any free one if it is taken.
async fn bind_preferring(port: u16) -> std::io::Result<TcpListener> {
    match TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(listener) => Ok(listener),
        Err(_) => TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await,
    }
}

/// Topics that are quiet in development get one partition unless the configuration names
/// them: the retry and delay tiers, the DLQ, the bulk lanes and the directory updates. Tansu
/// runs a fetch's queries for every partition it names, three times a fetch wait when the
/// partition is empty, one partition at a time: an idle `herald dev` with four partitions
/// everywhere kept the broker at 0.40 of a core; one partition for the tiers and the DLQ took
/// it to 0.25, and for the bulk lanes and directory updates too to 0.18. The channels'
/// transactional lanes, the requests and the events keep four, so a second dispatcher
/// started against this stack gets a share (the banner suggests it).
fn one_partition_for_quiet_topics(config: &mut HeraldConfig) {
    let topics = config.kafka.topics();
    let bulk = Lane::Bulk.suffix();
    for name in topics.all(config.dispatch.retry.policy().tiers()) {
        let short = name.strip_prefix(topics.prefix()).unwrap_or(&name);
        let quiet = short.starts_with("retry.")
            || short.starts_with("delay.")
            || short.ends_with(bulk)
            || name == topics.dlq()
            || name == topics.dlq_redriven()
            || name == topics.directory_updates();
        if quiet {
            config.topics.partitions_of.entry(short.to_owned()).or_insert(1);
        }
    }
}

/// Creates the tables of the stores configured on a CQL node (as `herald migrate` does) and
/// seeds the demo users and template into the configured directory; says where the stores
/// are, for the banner.
async fn seed_stores(config: &HeraldConfig) -> anyhow::Result<String> {
    herald_wiring::migrate::migrate(config).await.context("creating the stores' CQL tables")?;
    let template = [seed::TEMPLATE_ID.to_owned()];
    let announced = "announcing the demo template";
    let writer = herald_wiring::directory::writer(config).await?;
    let directory = AnyDirectory::open(&config.enricher).await?;
    seed::demo_users(&directory).await.context("seeding demo users")?;
    let announce = herald_wiring::directory::announce_templates(&writer, &directory, &template);
    announce.await.context(announced)?;
    let place = |on_cql: bool, scylla: &herald_runtime::scylla::ScyllaConfig| {
        if on_cql {
            format!("CQL node {} (keyspace {})", scylla.nodes.join(","), scylla.keyspace)
        } else {
            "SQLite".to_owned()
        }
    };
    let ledger = &config.dispatch.ledger;
    Ok(format!(
        "directory: {}, ledger: {}, ingest: {}",
        place(
            config.enricher.directory_backend == DirectoryBackend::Scylla,
            &config.enricher.scylla
        ),
        place(ledger.backend == herald_dispatchers::config::LedgerBackend::Scylla, &ledger.scylla),
        place(
            config.ingest.store_backend == herald_ingest::StoreBackend::Scylla,
            &config.ingest.scylla
        ),
    ))
}

fn port_is_free(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

pub async fn run(
    base: HeraldConfig,
    options: DevOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let data = &options.data_dir;
    std::fs::create_dir_all(data).with_context(|| format!("data directory {}", data.display()))?;

    let mut config = base;
    let broker = match &options.bootstrap_servers {
        Some(servers) => {
            config.kafka.bootstrap_servers = servers.clone();
            None
        }
        None => {
            let preferred = options.broker_port;
            let port = (preferred != 0 && port_is_free(preferred)).then_some(preferred);
            let log = data.join("tansu.log");
            // The development registry lives in memory, so the broker starts empty too:
            // records written with schema ids of an earlier run could not be decoded.
            let broker_data = data.join("broker");
            if broker_data.exists() {
                std::fs::remove_dir_all(&broker_data)
                    .context("clearing the previous run's broker data")?;
            }
            let storage = Storage::Sqlite(broker_data);
            let broker = match TansuBroker::start(port, storage.clone(), Some(&log)).await {
                // Taken between the check and the start: any free port will do.
                Err(herald_testkit::tansu::BrokerError::Exited { .. }) => {
                    TansuBroker::start(None, storage, Some(&log)).await
                }
                started => started,
            }
            .context("starting the Tansu broker")?;
            broker.point_at_this_broker(&mut config.kafka);
            Some(broker)
        }
    };
    config.kafka = config.kafka.with_dev_timings();

    let registry_listener =
        bind_preferring(options.registry_port).await.context("schema registry port")?;
    let registry_addr = registry_listener.local_addr()?;
    let registry_shutdown = shutdown.clone();
    tokio::spawn(
        DevRegistry::default()
            .serve(registry_listener, async move { registry_shutdown.cancelled().await }),
    );
    config.schema_registry.url = format!("http://{registry_addr}");

    let smtp_addr = SocketAddr::from(([127, 0, 0, 1], options.smtp_port));
    // A long-running dev session keeps the latest messages whole and counts the rest.
    let sink = SinkOptions { keep_messages: 200, record_attempts: false, ..SinkOptions::default() };
    let mail = MailSink::start_with(smtp_addr, sink.clone())
        .or_else(|_| MailSink::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), sink))
        .context("SMTP sink")?;
    config.dispatch.email.smtp.host = mail.addr().ip().to_string();
    config.dispatch.email.smtp.port = mail.addr().port();
    config.dispatch.email.smtp.tls = SmtpTls::None;

    config.topics.partitions = 4;
    config.topics.for_single_broker();
    one_partition_for_quiet_topics(&mut config);
    config.ingest.store_path = data.join("ingest.db");
    config.enricher.directory_path = data.join("directory.db");
    config.dispatch.ledger.path = data.join("ledger.db");
    config.validate()?;
    // Operator commands (herald groups, dlq, replay, another dispatcher) reach this stack
    // through this file.
    let operator_config = data.join("herald.toml");
    std::fs::write(&operator_config, operator(&config, &unrouted(&config), data).to_toml()?)
        .with_context(|| format!("writing {}", operator_config.display()))?;

    admin::create_topics(&config.kafka, &config.topic_specs()).await.context("creating topics")?;
    let stores = Box::pin(seed_stores(&config)).await?;
    let (_, api_key) = IngestStores::open(&config.ingest)
        .await
        .context("ingest store")?
        .clients
        .add_with(
            "herald-dev",
            herald_ingest::ClientPolicy {
                directory: Some(herald_ingest::DirectoryAccess::Write),
                ..herald_ingest::ClientPolicy::default()
            },
        )
        .await?;

    let mailbox_listener = bind_preferring(options.mailbox_port).await.context("mailbox port")?;
    let mailbox_addr = mailbox_listener.local_addr()?;
    let recordings = Recordings::default();
    let mailbox = mailbox_router(mail.clone(), recordings.clone());
    let mailbox_shutdown = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(mailbox_listener, mailbox)
            .with_graceful_shutdown(async move { mailbox_shutdown.cancelled().await })
            .await
    });

    // Push and SMS the configuration routes nowhere go to sandbox providers that record
    // what they would have sent; a route the configuration gives (a real APNs key being
    // tried) is kept.
    let sandboxed = unrouted(&config);
    let mut given = GivenProviders::new();
    for &channel in &sandboxed {
        let name = format!("sandbox-{channel}");
        let provider: Arc<dyn Provider> =
            Arc::new(SandboxProvider::in_memory(&name, recordings.clone()));
        given.insert(name.clone(), (provider, ProviderLimits::default()));
        let routes = BTreeMap::from([("default".to_owned(), vec![name])]);
        config.dispatch.routes.insert(channel.as_str().to_owned(), routes);
    }

    let api_listener = bind_preferring(options.api_port).await.context("send API port")?;
    let pipeline =
        Pipeline::start_with(config.clone(), api_listener, &Channel::ALL, given, shutdown.clone())
            .await?;
    let ops_listener = bind_preferring(options.ops_port).await.context("ops port")?;
    let ops_addr = ops_listener.local_addr()?;
    let readiness = Arc::new(herald_runtime::http::Serving);
    tokio::spawn(herald_wiring::roles::serve_ops(ops_listener, readiness, shutdown.clone()));
    print_banner(&Banner {
        api: pipeline.api_addr(),
        ops: ops_addr,
        bootstrap: &config.kafka.bootstrap_servers,
        registry: registry_addr,
        smtp: mail.addr(),
        mailbox: mailbox_addr,
        data_dir: data,
        api_key: &api_key,
        operator_config: &operator_config,
        stores: &stores,
        providers: &served_by(&config, &sandboxed),
        dispatch_group: &config.kafka.group("dispatch-email"),
    });
    let result = pipeline.wait().await;
    if let Some(broker) = broker {
        broker.stop().await;
    }
    result
}

/// The push and SMS channels `config` routes to no provider: `herald dev` serves them with
/// sandboxes. (Email always goes to the SMTP sink.)
fn unrouted(config: &HeraldConfig) -> Vec<Channel> {
    [Channel::Sms, Channel::Ios, Channel::Android]
        .into_iter()
        .filter(|c| config.dispatch.routes.get(c.as_str()).is_none_or(BTreeMap::is_empty))
        .collect()
}

/// Who serves each channel, for the banner: `sms: twilio, then vonage`.
fn served_by(config: &HeraldConfig, sandboxed: &[Channel]) -> String {
    let lines: Vec<String> = Channel::ALL
        .iter()
        .map(|&channel| {
            let who = if channel == Channel::Email {
                "the SMTP sink".to_owned()
            } else if sandboxed.contains(&channel) {
                "a sandbox (recorded on the mailbox page)".to_owned()
            } else {
                let routes = config.dispatch.routes.get(channel.as_str());
                let named: Vec<String> = routes
                    .into_iter()
                    .flatten()
                    .map(|(route, providers)| format!("{route}: {}", providers.join(", then ")))
                    .collect();
                named.join("; ")
            };
            format!("{:<8} {who}", channel.as_str())
        })
        .collect();
    lines.join("\n                    ")
}

/// The configuration operator commands use to reach this stack. Its push and SMS routes go
/// to sandbox providers recording to files in `data` (this process's own sandboxes live in
/// its memory, for the mailbox page): `herald dispatch --channel sms` started with it joins
/// the stack's dispatchers and records what it would have sent.
fn operator(config: &HeraldConfig, sandboxed: &[Channel], data: &std::path::Path) -> HeraldConfig {
    let mut operator = config.clone();
    for &channel in sandboxed {
        let name = format!("sandbox-{channel}");
        let settings = SandboxSettings {
            channel,
            record_to: Some(data.join(format!("{name}.jsonl"))),
            limits: ProviderLimits::default(),
        };
        operator.dispatch.providers.insert(name.clone(), ProviderConfig::Sandbox(settings));
        let routes = BTreeMap::from([("default".to_owned(), vec![name])]);
        operator.dispatch.routes.insert(channel.as_str().to_owned(), routes);
    }
    operator
}

fn mailbox_router(mail: MailSink, recordings: Recordings) -> axum::Router {
    let listing = mail.clone();
    let sandbox = recordings.clone();
    axum::Router::new()
        .route(
            "/sandbox",
            get(move || {
                let recordings = sandbox.clone();
                async move { Json(recordings.latest()) }
            }),
        )
        .route(
            "/messages",
            get(move || {
                let mail = mail.clone();
                async move { Json(mail.received()) }
            }),
        )
        .route(
            "/",
            get(move || {
                let mail = listing.clone();
                let recordings = recordings.clone();
                async move { render_mailbox(&mail, &recordings) }
            }),
        )
}

fn render_mailbox(mail: &MailSink, recordings: &Recordings) -> String {
    let mut out = String::new();
    let recorded = recordings.latest();
    if !recorded.is_empty() {
        out.push_str(&format!("{} push/SMS message(s) recorded by the sandbox providers, newest first (JSON: /sandbox)\n", recorded.len()));
        for r in recorded.iter().rev() {
            let title = r.title.as_deref().map(|t| format!("{t}: ")).unwrap_or_default();
            out.push_str(&format!(
                "  {} {} -> {}  {title}{}\n",
                r.channel, r.provider, r.target, r.text
            ));
        }
        out.push('\n');
    }
    out.push_str(&render_mail(mail));
    out
}

fn render_mail(mail: &MailSink) -> String {
    let received = mail.received();
    if received.is_empty() {
        return "The mailbox is empty. Send a notification with the curl command herald dev printed.\n".into();
    }
    let mut out = format!(
        "{} message(s), newest first (JSON with full sources: /messages)\n",
        received.len()
    );
    for message in received.iter().rev() {
        out.push_str("\n────────────────────────────────────────\n");
        out.push_str(&message.raw.replace("\r\n", "\n"));
        out.push('\n');
    }
    out
}

struct Banner<'a> {
    api: SocketAddr,
    ops: SocketAddr,
    bootstrap: &'a str,
    registry: SocketAddr,
    smtp: SocketAddr,
    mailbox: SocketAddr,
    data_dir: &'a std::path::Path,
    api_key: &'a str,
    operator_config: &'a std::path::Path,
    /// Where the stores are, in words.
    stores: &'a str,
    /// Who serves each channel, in words.
    providers: &'a str,
    dispatch_group: &'a str,
}

#[allow(clippy::print_stdout)]
fn print_banner(b: &Banner<'_>) {
    let users: Vec<String> =
        seed::DEMO_USERS.iter().map(|(id, what)| format!("{id} ({what})")).collect();
    println!(
        r#"
Herald dev is running. Data: {data}. Ctrl-C stops everything.

  send API          http://{api}  (/healthz, /readyz)
  metrics           http://{ops}/metrics
  Kafka (Tansu)     {bootstrap}
  schema registry   http://{registry}  (development endpoint)
  SMTP sink         {smtp}
  mailbox           http://{mailbox}/
  stores            {stores}
  providers         {providers}

Register your user and their phone, then send them a push:

  curl -sS -X PUT http://{api}/v1/users/42 \
    -H 'Authorization: Bearer {key}' \
    -H 'Content-Type: application/json' \
    -d '{{"email":"ji@example.com","phone":"+821012345678","locale":"ko-KR"}}'
  curl -sS -X PUT http://{api}/v1/users/42/devices/phone \
    -H 'Authorization: Bearer {key}' \
    -H 'Content-Type: application/json' \
    -d '{{"platform":"android","token":"fcm-token-of-jis-phone"}}'
  curl -sS -X POST http://{api}/v1/notifications \
    -H 'Authorization: Bearer {key}' \
    -H 'Content-Type: application/json' \
    -d '{{"to":[{{"user_id":42}}],"push":{{"title":"Hello","body":"It works."}}}}'

The push is on the sandbox page: http://{mailbox}/
Erase the user (a send to them is then skipped):
  curl -sS -X DELETE http://{api}/v1/users/42 -H 'Authorization: Bearer {key}'

Send a demo user an email:

  curl -sS -X POST http://{api}/v1/notifications \
    -H 'Authorization: Bearer {key}' \
    -H 'Content-Type: application/json' \
    -d '{{"to":[{{"user_id":123456}}],"from":{{"email":"noreply@example.com"}},"subject":"Hello from Herald","content":[{{"type":"text/plain","value":"It works."}}]}}'

Then read the delivered email:  curl -s http://{mailbox}/

Or from the demo template "otp" (en, ko, zh), in each user's language:
  -d '{{"to":[{{"user_id":123456}},{{"user_id":345678}}],"template_id":"otp","data":{{"code":"123456"}},"channels":["sms"]}}'

Demo users: {users}

Operator commands reach this stack through its configuration file:
  export HERALD_CONFIG={operator_config}
  herald groups lag --group {dispatch_group}
  herald replay --from 10m --dry-run
  herald dispatch --channel email     (a second email dispatcher: they split the partitions)
"#,
        data = b.data_dir.display(),
        api = b.api,
        ops = b.ops,
        bootstrap = b.bootstrap,
        registry = b.registry,
        smtp = b.smtp,
        mailbox = b.mailbox,
        key = b.api_key,
        users = users.join(", "),
        operator_config = b.operator_config.display(),
        stores = b.stores,
        providers = b.providers,
        dispatch_group = b.dispatch_group,
    );
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// `herald dispatch --channel sms` (or ios, android) started with the file `herald dev`
    /// writes finds its routes and records what it would send next to the stack's data.
    #[tokio::test]
    async fn the_operator_configuration_routes_every_channel_to_a_recording_sandbox() {
        use herald_dispatchers::routes::Routes;
        let data = tempfile::tempdir().unwrap();
        let file = data.path().join("herald.toml");
        let config = HeraldConfig::default();
        let written = operator(&config, &unrouted(&config), data.path());
        std::fs::write(&file, written.to_toml().unwrap()).unwrap();
        let config = HeraldConfig::load(Some(&file)).unwrap();
        for channel in Channel::ALL {
            let routes = Routes::build(channel, &config.dispatch, &Default::default())
                .unwrap_or_else(|e| panic!("{channel}: {e}"));
            assert!(!routes.providers("default", None).is_empty(), "{channel}");
        }
        let sms = Routes::build(Channel::Sms, &config.dispatch, &Default::default()).unwrap();
        let message = herald_schemas::ChannelMessage {
            notification_id: "n1".into(),
            channel: "sms".into(),
            target: "+14155550100".into(),
            sms: Some(herald_schemas::SmsContent { text: "hi".into() }),
            ..herald_schemas::ChannelMessage::default()
        };
        sms.providers("default", None)[0].send(&message).await.unwrap();
        let recorded = std::fs::read_to_string(data.path().join("sandbox-sms.jsonl")).unwrap();
        assert!(recorded.contains("+14155550100"), "{recorded}");
    }

    /// A user trying a real provider in development keeps it: only the channels the
    /// configuration leaves unrouted get sandboxes, and the banner names who serves each.
    #[test]
    fn a_channel_the_configuration_routes_keeps_its_providers_and_only_the_rest_get_sandboxes() {
        let mut config = HeraldConfig::default();
        let route = BTreeMap::from([("default".to_owned(), vec!["apns-shop".to_owned()])]);
        config.dispatch.routes.insert("ios".into(), route);
        let sandboxed = unrouted(&config);
        assert_eq!(sandboxed, [Channel::Sms, Channel::Android]);
        let data = tempfile::tempdir().unwrap();
        let operator = operator(&config, &sandboxed, data.path());
        assert_eq!(operator.dispatch.routes["ios"]["default"], ["apns-shop"]);
        assert_eq!(operator.dispatch.routes["sms"]["default"], ["sandbox-sms"]);
        let banner = served_by(&config, &sandboxed);
        assert!(banner.contains("ios      default: apns-shop"), "{banner}");
        assert!(banner.contains("android  a sandbox"), "{banner}");
    }

    #[test]
    fn quiet_topics_get_one_partition_and_the_rest_and_explicit_choices_stay() {
        let mut config = HeraldConfig::default();
        config.topics.partitions = 4;
        config.topics.partitions_of.insert("retry.email.1".into(), 3);
        one_partition_for_quiet_topics(&mut config);
        let partitions: BTreeMap<String, i32> =
            config.topic_specs().into_iter().map(|t| (t.name, t.partitions)).collect();
        assert_eq!(partitions["herald.retry.email.1"], 3, "named in the configuration");
        assert_eq!(partitions["herald.retry.email.2"], 1);
        assert_eq!(partitions["herald.retry.webhooks.1"], 1);
        assert_eq!(partitions["herald.delay.1s"], 1);
        assert_eq!(partitions["herald.dlq"], 1);
        assert_eq!(partitions["herald.requests.bulk"], 1);
        assert_eq!(partitions["herald.channel.sms.bulk"], 1);
        assert_eq!(partitions["herald.directory.updates"], 1);
        assert_eq!(partitions["herald.channel.sms"], 4);
        assert_eq!(partitions["herald.channel.email"], 4);
        assert_eq!(partitions["herald.requests"], 4);
        assert_eq!(partitions["herald.events"], 4);
    }
}
