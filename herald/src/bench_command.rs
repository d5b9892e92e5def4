//! `herald bench`: the benchmarks' command line, printing their figures.

use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Sends per second of each provider kind against its local stand-in: the provider
    /// layer alone, then a whole dispatcher on an embedded broker.
    Dispatch {
        /// Providers to measure (repeatable); all when none is given.
        #[arg(long = "provider", value_enum)]
        providers: Vec<crate::bench::BenchProvider>,
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
        /// Broker storage: sqlite (batching) or memory (one record per produce batch).
        #[arg(long, value_enum, default_value = "sqlite")]
        storage: herald_testkit::BrokerStorage,
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
        /// Broker storage: sqlite (batching) or memory (one record per produce batch).
        #[arg(long, value_enum, default_value = "sqlite")]
        storage: herald_testkit::BrokerStorage,
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
        /// Broker storage: sqlite (batching) or memory (one record per produce batch).
        #[arg(long, value_enum, default_value = "sqlite")]
        storage: herald_testkit::BrokerStorage,
        /// Also write the figures as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

impl BenchCommand {
    #[allow(clippy::print_stdout)] // the figures are the command's output
    /// `tuning`: the configuration given to `herald bench`, whose Kafka tuning the
    /// benchmarked roles use.
    pub async fn run(self, tuning: &crate::config::HeraldConfig) -> anyhow::Result<()> {
        match self {
            BenchCommand::Dispatch {
                providers,
                messages,
                latency,
                concurrency,
                provider_only,
                storage,
                json,
            } => {
                let providers = if providers.is_empty() {
                    crate::bench::BenchProvider::ALL.to_vec()
                } else {
                    providers
                };
                let options = crate::bench::DispatchBenchOptions {
                    providers,
                    messages,
                    latency,
                    concurrency,
                    dispatcher: !provider_only,
                    storage,
                };
                let rows = crate::bench::dispatch(options.clone(), tuning).await?;
                print!("{}", crate::bench::render(&rows, &options));
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&rows)?)?;
                }
                Ok(())
            }
            BenchCommand::E2e { users, requests, rates, rate_seconds, latency, storage, json } => {
                let options = crate::bench_e2e::E2eOptions {
                    users,
                    requests,
                    rates,
                    rate_seconds,
                    latency,
                    storage,
                };
                let report = crate::bench_e2e::e2e(options.clone(), tuning).await?;
                print!("{}", crate::bench_e2e::render(&report, &options));
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                }
                Ok(())
            }
            BenchCommand::Enrich { users, requests, storage, json } => {
                let options = crate::bench_enrich::EnrichBenchOptions { users, requests, storage };
                let report = crate::bench_enrich::enrich(options, tuning).await?;
                print!("{}", crate::bench_enrich::render(&report));
                if let Some(path) = json {
                    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
                }
                Ok(())
            }
        }
    }
}
