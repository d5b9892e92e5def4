//! The `herald` command line: one module per subcommand, each an `Args` struct and a `run`.

mod acls;
#[cfg(feature = "dev")]
mod bench;
#[cfg(feature = "dev")]
mod chaos;
mod clients;
mod config;
#[cfg(feature = "dev")]
mod dev;
#[cfg(feature = "dev")]
mod dev_registry;
mod directory;
mod dispatch;
mod dlq;
mod enrich;
mod groups;
mod ingest;
mod migrate;
mod produce;
mod replay;
mod schemas;
mod topics;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use herald_wiring::config::HeraldConfig;

#[derive(Parser, Debug)]
#[command(name = "herald", version, about = "A Kafka-native notification pipeline")]
pub struct Cli {
    /// TOML configuration file; `HERALD__SECTION__KEY` environment variables override it.
    #[arg(long, global = true, env = "HERALD_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    #[cfg(feature = "dev")]
    /// Run everything on this machine: broker, registry, stores, roles, SMTP sink.
    Dev(dev::DevArgs),
    /// Serve the send API.
    Ingest(ingest::IngestArgs),
    /// Run the enricher (consumer groups herald-enricher and herald-enricher-bulk).
    Enrich(enrich::EnrichArgs),
    /// Run a channel's dispatcher (consumer groups herald-dispatch-<channel>[-bulk]).
    Dispatch(dispatch::DispatchArgs),
    /// Topic administration.
    Topics(topics::TopicsArgs),
    /// API clients of the send API.
    Clients(clients::ClientsArgs),
    /// The dead-letter topic: list, inspect, redrive.
    Dlq(dlq::DlqArgs),
    /// Consumer groups: lag per partition.
    Groups(groups::GroupsArgs),
    #[cfg(feature = "dev")]
    /// Serve the development schema registry alone (not for production).
    DevRegistry(dev_registry::DevRegistryArgs),
    #[cfg(feature = "dev")]
    /// Fault run: send notifications through separately running roles while killing them
    /// (or the brokers of a three-broker Kafka cluster) and failing deliveries; print sent,
    /// delivered, lost, duplicates, dead-lettered.
    Chaos(chaos::ChaosArgs),
    /// Produce a topic's records of a time window or offset range again (default: both
    /// request lanes). Already delivered notifications are not sent again (the delivery
    /// ledger remembers them) unless --force-resend.
    Replay(replay::Replay),
    /// The Kafka ACLs each role and operator command needs, as a table or kafka-acls.sh
    /// commands.
    Acls(acls::AclsArgs),
    /// Create the ScyllaDB keyspaces and tables of the stores configured to live there.
    Migrate(migrate::MigrateArgs),
    /// Herald's Avro schemas in the schema registry.
    Schemas(schemas::SchemasArgs),
    /// The enricher's directory: users, devices, preferences, templates.
    Directory(directory::DirectoryArgs),
    /// Produce JSON lines of NotificationRequest to herald.requests as Confluent-framed Avro.
    Produce(produce::ProduceArgs),
    #[cfg(feature = "dev")]
    /// Benchmarks that print figures.
    Bench(bench::BenchArgs),
    /// Print the effective configuration (after file and environment) and exit.
    Config(config::ConfigArgs),
}

impl Command {
    pub async fn run(self, config: HeraldConfig) -> anyhow::Result<()> {
        match self {
            #[cfg(feature = "dev")]
            Self::Dev(args) => args.run(config).await,
            Self::Ingest(args) => args.run(&config).await,
            Self::Enrich(args) => args.run(&config).await,
            Self::Dispatch(args) => args.run(&config).await,
            Self::Topics(args) => args.run(&config).await,
            Self::Clients(args) => args.run(&config).await,
            Self::Dlq(args) => args.run(&config).await,
            Self::Groups(args) => args.run(&config).await,
            #[cfg(feature = "dev")]
            Self::DevRegistry(args) => args.run().await,
            #[cfg(feature = "dev")]
            Self::Chaos(args) => args.run().await,
            Self::Replay(args) => args.run(&config).await,
            Self::Migrate(args) => args.run(&config).await,
            Self::Acls(args) => args.run(&config),
            Self::Schemas(args) => args.run(&config).await,
            Self::Directory(args) => args.run(&config).await,
            Self::Produce(args) => args.run(&config).await,
            #[cfg(feature = "dev")]
            Self::Bench(args) => args.run(&config).await,
            Self::Config(args) => args.run(&config),
        }
    }
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

#[cfg(test)]
mod tests {
    /// clap checks a command line's definition only when it parses: every subcommand's
    /// arguments are checked here at once.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
