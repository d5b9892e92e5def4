//! `herald bench`: benchmarks that print figures (the drivers live in `herald::bench`).

use herald::bench::BenchCommand;
use herald::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchCommand,
}

impl BenchArgs {
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        self.what.run(config).await
    }
}
