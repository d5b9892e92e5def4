//! `herald`: one binary, one subcommand per role. The subcommands live in `cli/`.

use clap::Parser;
use herald::cli;
use herald_wiring::config::HeraldConfig;
use tracing_subscriber::EnvFilter;

/// mimalloc: under glibc's allocator `malloc`/`free` and its arena locks were a large share
/// of a dispatcher's CPU samples, and transparent huge pages (off: `no_thp`) raised the
/// enricher's peak RSS.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let cli = cli::Cli::parse();
    let config = HeraldConfig::load(cli.config.as_deref())?;
    Box::pin(cli.command.run(config)).await
}
