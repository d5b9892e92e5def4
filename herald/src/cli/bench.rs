//! `herald bench`: benchmarks that print figures (the drivers live in `herald_devtools::bench`).

use herald_devtools::bench::BenchCommand;
use herald_wiring::config::HeraldConfig;

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
