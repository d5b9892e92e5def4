//! `herald`: one binary, one subcommand per role.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use herald::config::HeraldConfig;
use herald::dev::{self, DevOptions};
use herald::roles;
use herald_ingest::ApiClients;
use herald_runtime::kafka::admin;
use herald_runtime::shutdown;
use herald_schemas::Channel;
use herald_schemas::dev_registry::DevRegistry;
use tracing_subscriber::EnvFilter;

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
    Dev {
        #[arg(long, default_value = ".herald/dev")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 8080)]
        api_port: u16,
        /// Use this Kafka cluster instead of starting Tansu.
        #[arg(long)]
        bootstrap_servers: Option<String>,
    },
    /// Serve the send API.
    Ingest,
    /// Run the enricher (consumer group herald-enricher).
    Enrich,
    /// Run a channel's dispatcher (consumer group herald-dispatch-<channel>).
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
    /// Serve the development schema registry alone (not for production).
    DevRegistry {
        #[arg(long, default_value = "127.0.0.1:8081")]
        listen: std::net::SocketAddr,
    },
    /// Print the effective configuration (after file and environment) and exit.
    Config,
}

#[derive(Subcommand, Debug)]
enum TopicsCommand {
    /// Create every pipeline topic that does not exist yet.
    Create,
}

#[derive(Subcommand, Debug)]
enum ClientsCommand {
    /// Create a client; its key is printed once and never stored.
    Add {
        name: String,
    },
    List,
    Revoke {
        client_id: String,
    },
}

fn init_tracing() {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,librdkafka=warn,mailin=warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    herald_schemas::install_tls_provider();
    let cli = Cli::parse();
    let config = HeraldConfig::load(cli.config.as_deref())?;
    run(cli.command, config).await
}

#[allow(clippy::print_stdout)]
async fn run(command: Command, config: HeraldConfig) -> anyhow::Result<()> {
    match command {
        Command::Dev { data_dir, api_port, bootstrap_servers } => {
            let options =
                DevOptions { data_dir, api_port, bootstrap_servers, ..DevOptions::default() };
            dev::run(config, options, shutdown::on_signal()).await
        }
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
            let (role, ops) = tokio::join!(
                roles::dispatcher(&config, channel, token.clone()),
                roles::ops(&config, token)
            );
            role.and(ops)
        }
        Command::Topics { command: TopicsCommand::Create } => {
            admin::create_topics(&config.kafka, &config.topic_specs()).await?;
            println!("{} topics present", config.topic_specs().len());
            Ok(())
        }
        Command::Clients { command } => {
            let clients = ApiClients::open(&config.ingest.store_path)?;
            match command {
                ClientsCommand::Add { name } => {
                    let (client, key) = clients.add(&name)?;
                    println!(
                        "client {} ({})\nkey (shown once): {key}",
                        client.client_id, client.name
                    );
                }
                ClientsCommand::List => {
                    for c in clients.list()? {
                        let state = if c.revoked { "revoked" } else { "active" };
                        println!("{}\t{}\t{state}", c.client_id, c.name);
                    }
                }
                ClientsCommand::Revoke { client_id } => {
                    anyhow::ensure!(clients.revoke(&client_id)?, "no active client {client_id}");
                    println!("revoked {client_id}");
                }
            }
            Ok(())
        }
        Command::DevRegistry { listen } => {
            let token = shutdown::on_signal();
            let listener = tokio::net::TcpListener::bind(listen).await?;
            tracing::info!(%listen, "development schema registry listening");
            DevRegistry::default().serve(listener, async move { token.cancelled().await }).await?;
            Ok(())
        }
        Command::Config => {
            // Debug, not serde: its Kafka section redacts secret-looking properties.
            println!("{config:#?}");
            Ok(())
        }
    }
}
