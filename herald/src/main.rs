//! `herald`: one binary, one subcommand per role.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::config::HeraldConfig;
use herald::dev::{self, DevOptions};
use herald::dlq;
use herald::roles;
use herald_ingest::IngestStores;
use herald_runtime::shutdown;
use herald_schemas::Channel;
use herald_schemas::dev_registry::DevRegistry;
use tracing_subscriber::EnvFilter;

/// mimalloc: under glibc's allocator `malloc`/`free` and its arena locks were a sixth of a
/// dispatcher's CPU samples. Built with transparent huge pages off (`no_thp`): with them the
/// enricher's peak RSS rose from 93 to 120 MiB.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(name = "herald", version, about = "A Kafka-native notification pipeline")]
struct Cli {
    /// TOML configuration file; `HERALD__SECTION__KEY` environment variables override it.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything on this machine: broker, registry, stores, roles, SMTP sink.
    Dev(DevOptions),
    /// Serve the send API.
    Ingest,
    /// Run the enricher (consumer groups herald-enricher and herald-enricher-bulk).
    Enrich,
    /// Run a channel's dispatcher (consumer groups herald-dispatch-<channel>[-bulk]).
    Dispatch {
        #[arg(long)]
        channel: Channel,
    },
    /// Topic administration.
    Topics {
        #[command(subcommand)]
        command: TopicsCommand,
    },
    /// API clients of the send API.
    Clients {
        #[command(subcommand)]
        command: ClientsCommand,
    },
    /// The dead-letter topic: list, inspect, redrive.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Consumer groups: lag per partition.
    Groups {
        #[command(subcommand)]
        command: herald::groups::GroupsCommand,
    },
    /// Serve the development schema registry alone (not for production).
    DevRegistry {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
    /// Fault run: send notifications through separately running roles while killing them
    /// (or the brokers of a three-broker Kafka cluster) and failing deliveries; print sent,
    /// delivered, lost, duplicates, dead-lettered.
    Chaos(herald::chaos::ChaosArgs),
    /// Produce a topic's records of a time window or offset range again (default: both
    /// request lanes). Already delivered notifications are not sent again (the delivery
    /// ledger remembers them) unless --force-resend.
    Replay(herald::replay::ReplayArgs),
    /// Create the ScyllaDB keyspaces and tables of the stores configured to live there.
    Migrate,
    /// The enricher's directory: users, devices, preferences, templates.
    Directory {
        #[command(subcommand)]
        command: herald::directory::DirectoryCommand,
    },
    /// Produce JSON lines of NotificationRequest to herald.requests as Confluent-framed Avro.
    Produce {
        /// A file with one request per line.
        #[arg(long)]
        file: PathBuf,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        what: herald::bench::BenchCommand,
    },
    /// Print the effective configuration (after file and environment) and exit.
    Config,
}

#[derive(Subcommand, Debug)]
enum TopicsCommand {
    /// Bring the cluster's topics to their definitions (`[topics]`): create missing ones, add
    /// partitions, set min.insync.replicas and retention. Never removes anything.
    #[command(alias = "create")]
    Apply {
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(clap::Args, Debug)]
struct DlqFilterArgs {
    /// Only dead letters of this channel (email, sms, ios, android).
    #[arg(long)]
    channel: Option<Channel>,
    /// Only reasons containing this text.
    #[arg(long)]
    reason: Option<String>,
    /// Only this class.
    #[arg(long, value_enum)]
    class: Option<dlq::Class>,
    /// Only those given up by this consumer group (herald-enricher, or enricher).
    #[arg(long)]
    group: Option<String>,
    /// Failed at or after: RFC 3339 time, or a duration ago (e.g. 2h).
    #[arg(long)]
    since: Option<String>,
    /// Failed before: RFC 3339 time, or a duration ago.
    #[arg(long)]
    until: Option<String>,
}

impl DlqFilterArgs {
    fn filter(self, config: &HeraldConfig) -> anyhow::Result<dlq::Filter> {
        let group = match &self.group {
            Some(given) => herald::groups::resolve_group(config, given, false)?.map(|g| g.name),
            None => None,
        };
        Ok(dlq::Filter {
            channel: self.channel.map(|c| c.as_str().to_owned()),
            reason: self.reason,
            class: self.class,
            group,
            since: self.since.as_deref().map(dlq::parse_time).transpose()?,
            until: self.until.as_deref().map(dlq::parse_time).transpose()?,
        })
    }
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// List dead letters.
    List {
        #[command(flatten)]
        filter: DlqFilterArgs,
    },
    /// Show one dead letter, headers and decoded payload.
    Show {
        /// partition:offset, as `list` prints it.
        position: String,
    },
    /// Put dead letters back: a channel's into its first retry tier, others into their
    /// origin topic. Poison records (undecodable) are left alone unless `--class poison`, and
    /// dead letters redriven before unless `--again`.
    Redrive {
        #[command(flatten)]
        filter: DlqFilterArgs,
        /// Count what would be redriven, produce nothing.
        #[arg(long)]
        dry_run: bool,
        /// Redrive dead letters that were redriven before too.
        #[arg(long)]
        again: bool,
        /// At most this many records a second.
        #[arg(long, default_value_t = 200)]
        rate: u32,
    },
}

#[derive(Subcommand, Debug)]
enum ClientsCommand {
    /// Create a client; its key is printed once and never stored.
    Add {
        name: String,
        /// Channels it may request (email, sms, push; repeatable); all when none is given.
        #[arg(long = "channel")]
        channels: Vec<String>,
        /// Categories it may send (repeatable); all when none is given.
        #[arg(long = "category")]
        categories: Vec<String>,
        /// Requests per second it may make (answered 429 with Retry-After beyond).
        #[arg(long)]
        rate: Option<f64>,
    },
    List,
    Revoke {
        client_id: String,
    },
    /// Send the client's notifications' events to a URL it serves, signed with a secret
    /// printed once (Herald-Signature: t=<ms>,v1=<hex HMAC-SHA256 of "<t>.<body>">).
    Webhook {
        client_id: String,
        #[arg(long, required_unless_present = "remove")]
        url: Option<String>,
        /// Event kinds to send (repeatable: sent, delivered, failed, ...); all when none.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Stop sending this client's events.
        #[arg(long, conflicts_with_all = ["url", "events"])]
        remove: bool,
    },
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,librdkafka=warn,mailin=warn"));
    // Logs go to stderr: stdout carries command output (`herald dlq list`, `herald config`).
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    herald_schemas::install_tls_provider();
    let cli = Cli::parse();
    let config = HeraldConfig::load(cli.config.as_deref())?;
    Box::pin(run(cli.command, config)).await
}

#[allow(clippy::print_stdout)]
async fn run(command: Command, config: HeraldConfig) -> anyhow::Result<()> {
    match command {
        Command::Dev(options) => dev::run(config, options, shutdown::on_signal()).await,
        Command::Ingest => {
            let listener = tokio::net::TcpListener::bind(config.ingest.listen)
                .await
                .with_context(|| format!("binding {}", config.ingest.listen))?;
            roles::ingest(&config, listener, shutdown::on_signal()).await
        }
        Command::Enrich => {
            let token = shutdown::on_signal();
            let (role, ops) =
                tokio::join!(roles::enricher(&config, token.clone()), roles::ops(&config, token));
            role.and(ops)
        }
        Command::Dispatch { channel } => {
            let token = shutdown::on_signal();
            let none = roles::GivenProviders::new();
            let (role, ops) = tokio::join!(
                roles::dispatcher(&config, channel, &none, token.clone()),
                roles::ops(&config, token)
            );
            role.and(ops)
        }
        Command::Topics { command: TopicsCommand::Apply { dry_run } } => {
            let specs = config.topic_specs();
            let plan =
                herald_runtime::kafka::apply::apply_topics(&config.kafka, &specs, dry_run).await?;
            print!("{}", herald::topics::render_plan(&plan, dry_run));
            Ok(())
        }
        Command::Clients { command } => {
            let stores = IngestStores::open(&config.ingest).await?;
            let clients = &stores.clients;
            match command {
                ClientsCommand::Add { name, channels, categories, rate } => {
                    if let Some(bad) =
                        channels.iter().find(|c| !["email", "sms", "push"].contains(&c.as_str()))
                    {
                        anyhow::bail!("unknown channel {bad:?}: email, sms or push");
                    }
                    anyhow::ensure!(rate.is_none_or(|r| r > 0.0), "--rate must be above 0");
                    let policy =
                        herald_ingest::ClientPolicy { channels, categories, rate_per_second: rate };
                    let (client, key) = clients.add_with(&name, policy).await?;
                    println!(
                        "client {} ({})\nkey (shown once): {key}",
                        client.client_id, client.name
                    );
                }
                ClientsCommand::List => {
                    for c in clients.list().await? {
                        let state = if c.revoked { "revoked" } else { "active" };
                        let all = |v: &[String]| {
                            if v.is_empty() { "all".to_owned() } else { v.join(",") }
                        };
                        let rate =
                            c.policy.rate_per_second.map_or("-".to_owned(), |r| format!("{r}/s"));
                        println!(
                            "{}\t{}\t{state}\tchannels={}\tcategories={}\trate={rate}",
                            c.client_id,
                            c.name,
                            all(&c.policy.channels),
                            all(&c.policy.categories)
                        );
                    }
                }
                ClientsCommand::Revoke { client_id } => {
                    anyhow::ensure!(
                        clients.revoke(&client_id).await?,
                        "no active client {client_id}"
                    );
                    println!("revoked {client_id}");
                }
                ClientsCommand::Webhook { client_id, url, events, remove } => {
                    let known = clients.list().await?.iter().any(|c| c.client_id == client_id);
                    anyhow::ensure!(known, "no client {client_id} (herald clients list)");
                    let registry = &stores.webhooks;
                    match url {
                        Some(url) if !remove => {
                            let webhook = registry.set(&client_id, &url, &events).await?;
                            let kinds =
                                if events.is_empty() { "all".into() } else { events.join(", ") };
                            println!("webhook of {client_id}: {url} ({kinds} events)");
                            println!("signing secret (shown once): {}", webhook.secret);
                        }
                        _ => {
                            anyhow::ensure!(
                                registry.remove(&client_id).await?,
                                "{client_id} has no webhook"
                            );
                            println!("removed the webhook of {client_id}");
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Dlq { command } => run_dlq(command, &config).await,
        Command::Groups { command } => command.run(&config).await,
        Command::DevRegistry { listen } => {
            let token = shutdown::on_signal();
            let listener = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(%listen, "development schema registry listening");
            DevRegistry::default().serve(listener, async move { token.cancelled().await }).await?;
            Ok(())
        }
        Command::Chaos(args) => args.run().await,
        Command::Replay(args) => {
            print!("{}", herald::replay::run(&config, &args).await?);
            Ok(())
        }
        Command::Migrate => {
            let done = roles::migrate(&config).await?;
            if done.is_empty() {
                println!("no store is configured to live in ScyllaDB: nothing to create");
            }
            for line in done {
                println!("created (if missing): {line}");
            }
            Ok(())
        }
        Command::Directory {
            command: herald::directory::DirectoryCommand::Import { file, format, kind },
        } => {
            let options = herald::directory::ImportOptions::for_file(&file, format, kind)?;
            let progress = file_progress(&file);
            let report =
                herald::directory::import_configured(&config, &file, options, &progress).await?;
            progress.finish_and_clear();
            for (line, reason) in &report.refused {
                eprintln!("line {line}: {reason}");
            }
            if report.refused_total > report.refused.len() {
                eprintln!("... and {} more", report.refused_total - report.refused.len());
            }
            println!("{}\n{}", report.summary(), report.timing());
            anyhow::ensure!(
                report.refused_total == 0,
                "{} of {} record(s) refused",
                report.refused_total,
                report.read
            );
            Ok(())
        }
        Command::Produce { file } => {
            let progress = file_progress(&file);
            let report = herald::produce::run(&config, &file, &progress).await?;
            progress.finish_and_clear();
            for (line, reason) in &report.refused {
                eprintln!("line {line}: {reason}");
            }
            for (line, id) in &report.produced {
                println!("line {line}\t{id}");
            }
            println!("produced {}, skipped {}", report.produced.len(), report.refused.len());
            anyhow::ensure!(report.refused.is_empty(), "{} line(s) skipped", report.refused.len());
            Ok(())
        }
        Command::Bench { what } => what.run(&config).await,
        Command::Config => {
            print!("{}", config.to_toml().context("writing the configuration as TOML")?);
            Ok(())
        }
    }
}

#[allow(clippy::print_stdout)]
async fn run_dlq(command: DlqCommand, config: &HeraldConfig) -> anyhow::Result<()> {
    let kafka = config.kafka.clone();
    match command {
        DlqCommand::List { filter } => {
            let filter = filter.filter(config)?;
            let letters = tokio::task::spawn_blocking(move || dlq::read(&kafka, &filter)).await??;
            print!("{}", dlq::render_list(&letters));
        }
        DlqCommand::Show { position } => {
            let (partition, offset) = position
                .split_once(':')
                .and_then(|(p, o)| Some((p.parse().ok()?, o.parse().ok()?)))
                .context("position is partition:offset, e.g. 0:17")?;
            let letter = tokio::task::spawn_blocking(move || dlq::fetch(&kafka, partition, offset))
                .await??;
            let codec = herald_schemas::AvroCodec::new(&config.schema_registry.resolve()?)?;
            print!("{}", dlq::render_one(&letter, &codec).await);
        }
        DlqCommand::Redrive { filter, dry_run, again, rate } => {
            let poison_asked = filter.class == Some(dlq::Class::Poison);
            let filter = filter.filter(config)?;
            let reader = kafka.clone();
            let letters =
                tokio::task::spawn_blocking(move || dlq::read(&reader, &filter)).await??;
            let (letters, left) = dlq::to_redrive(letters, poison_asked, again);
            let progress = indicatif::ProgressBar::new(letters.len() as u64);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta}")
            {
                progress.set_style(style);
            }
            let sent = dlq::redrive(&kafka, &letters, rate, dry_run, &progress).await?;
            progress.finish_and_clear();
            let verb = if dry_run { "would redrive" } else { "redrove" };
            println!("{verb} {sent} dead letter(s)");
            print!("{}", left.render());
        }
    }
    Ok(())
}

/// A progress bar over the bytes of `file`.
fn file_progress(file: &std::path::Path) -> indicatif::ProgressBar {
    let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
    let progress = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        progress.set_style(style);
    }
    progress
}
