//! `herald dev`: the whole stack on this machine.

use herald_devtools::dev::DevOptions;
use herald_runtime::shutdown;
use herald_wiring::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    #[command(flatten)]
    options: DevOptions,
}

impl DevArgs {
    pub async fn run(self, config: HeraldConfig) -> anyhow::Result<()> {
        herald_devtools::dev::run(config, self.options, shutdown::on_signal()).await
    }
}
