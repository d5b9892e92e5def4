//! `herald dev`: the whole stack on this machine.

use herald::config::HeraldConfig;
use herald::dev::DevOptions;
use herald_runtime::shutdown;

#[derive(clap::Args, Debug)]
pub struct DevArgs {
    #[command(flatten)]
    options: DevOptions,
}

impl DevArgs {
    pub async fn run(self, config: HeraldConfig) -> anyhow::Result<()> {
        herald::dev::run(config, self.options, shutdown::on_signal()).await
    }
}
