//! `herald bench`: the benchmarks' command line, printing their figures.

pub mod directory;
pub mod dispatch;
pub mod e2e;
pub mod enrich;
pub mod ledger;
pub mod stack;
pub mod standins;

use std::path::PathBuf;
use std::time::Instant;

/// What the benchmark is doing now, on stderr (the figures go to stdout).
#[allow(clippy::print_stderr)]
pub(crate) fn progress(step: &str) {
    eprintln!("[{:>8.1}s] {step}", started_at().elapsed().as_secs_f64());
}

fn started_at() -> Instant {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Sends per second of each provider kind against its local stand-in: the provider
    /// layer alone, then a whole dispatcher on an embedded broker.
    Dispatch {
        /// Providers to measure (repeatable); all when none is given.
        #[arg(long = "provider", value_parser = crate::bench::standins::bench_kind)]
        providers: Vec<&'static str>,
        #[arg(long, default_value_t = 20_000)]
        messages: usize,
        /// How long each stand-in takes to answer.
        #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
        latency: std::time::Duration,
        /// Concurrent sends per provider.
        #[arg(long, default_value_t = 256)]
        concurrency: usize,
        /// Measure the provider layer only (no broker, no ledger).
        #[arg(long)]
        provider_only: bool,
        #[command(flatten)]
        stack: stack::StackArgs,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The enricher against the broker's limit: a raw consume→produce copy, then
    /// `herald enrich` (its own process) with a cold and a warm cache.
    Enrich {
        /// Users in the SQLite directory (1 to 3 devices each).
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Requests per run.
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        #[command(flatten)]
        stack: stack::StackArgs,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The directory's ways in: N users imported through herald.directory.changes (changes
    /// applied per second), then devices registered through the directory API (per second,
    /// and latency), each beside a raw copy of the change records.
    Directory {
        /// Users in the file imported (1 to 3 devices each).
        #[arg(long, default_value_t = 20_000)]
        users: usize,
        /// How long the API is called for.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Callers of the API at once.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        #[command(flatten)]
        stack: stack::StackArgs,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The delivery ledger's claim and completion per delivery, on SQLite and on a CQL node.
    Ledger {
        /// Stores to measure (repeatable): sqlite, cql; both when none is given.
        #[arg(long = "store", value_enum)]
        stores: Vec<stack::StoreChoice>,
        #[arg(long, default_value_t = 20_000)]
        deliveries: usize,
        /// Deliveries under way at once (a dispatcher's send slots).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// A running CQL node (host:port; TLS and login from the HERALD_TEST_CQL_* variables);
        /// else Cassandra is started for the run.
        #[arg(long)]
        cql_node: Option<String>,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
    /// The whole pipeline against the broker's limit: a raw copy, then the enricher and the
    /// email, ios and android dispatchers (own processes) delivering to provider stand-ins,
    /// at full speed and at fixed rates (latency from acceptance to the provider's answer).
    E2e {
        /// Users in the SQLite directory (1 to 3 devices, an address and a phone each).
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Requests of the full-speed run (about 3 deliveries each).
        #[arg(long, default_value_t = 5_000)]
        requests: usize,
        /// Requests per second of a fixed-rate run (repeatable). The defaults sit below what
        /// this 2-core machine sustains with the broker on it; above it, latency is queueing.
        #[arg(long = "rate", default_values_t = [100u32, 250])]
        rates: Vec<u32>,
        /// How long each fixed-rate run produces.
        #[arg(long, default_value_t = 10)]
        rate_seconds: u64,
        /// How long the provider stand-ins take to answer.
        #[arg(long, default_value = "1ms", value_parser = humantime::parse_duration)]
        latency: std::time::Duration,
        #[command(flatten)]
        stack: stack::StackArgs,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

impl BenchCommand {
    #[allow(clippy::print_stdout)] // the figures are the command's output
    /// `tuning`: the configuration given to `herald bench`, whose Kafka tuning the
    /// benchmarked roles use.
    pub async fn run(self, tuning: &herald_wiring::config::HeraldConfig) -> anyhow::Result<()> {
        match self {
            BenchCommand::Dispatch {
                providers,
                messages,
                latency,
                concurrency,
                provider_only,
                stack,
                json,
            } => {
                let providers = if providers.is_empty() {
                    crate::bench::standins::bench_kinds()
                } else {
                    providers
                };
                let options = crate::bench::dispatch::DispatchBenchOptions {
                    providers,
                    messages,
                    latency,
                    concurrency,
                    dispatcher: !provider_only,
                    stack,
                };
                let rows = crate::bench::dispatch::dispatch(options.clone(), tuning).await?;
                print!("{}", crate::bench::dispatch::render(&rows, &options));
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
                }
                Ok(())
            }
            BenchCommand::E2e { users, requests, rates, rate_seconds, latency, stack, json } => {
                let options = crate::bench::e2e::E2eOptions {
                    users,
                    requests,
                    rates,
                    rate_seconds,
                    latency,
                    stack,
                };
                let report = crate::bench::e2e::e2e(options.clone(), tuning).await?;
                print!("{}", crate::bench::e2e::render(&report, &options));
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                }
                Ok(())
            }
            BenchCommand::Directory { users, seconds, connections, stack, json } => {
                let options =
                    directory::DirectoryBenchOptions { users, seconds, connections, stack };
                let report = directory::directory(options, tuning).await?;
                print!("{}", directory::render(&report));
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                }
                Ok(())
            }
            BenchCommand::Ledger { stores, deliveries, concurrency, cql_node, json } => {
                let stores = if stores.is_empty() {
                    vec![stack::StoreChoice::Sqlite, stack::StoreChoice::Cql]
                } else {
                    stores
                };
                let options =
                    ledger::LedgerBenchOptions { stores, deliveries, concurrency, cql_node };
                let rows = ledger::ledger(options).await?;
                print!("{}", ledger::render(&rows));
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
                }
                Ok(())
            }
            BenchCommand::Enrich { users, requests, stack, json } => {
                let options = crate::bench::enrich::EnrichBenchOptions { users, requests, stack };
                let report = crate::bench::enrich::enrich(options, tuning).await?;
                print!("{}", crate::bench::enrich::render(&report));
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                }
                Ok(())
            }
        }
    }
}
