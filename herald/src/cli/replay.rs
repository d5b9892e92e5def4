//! `herald replay`: a topic's records of a window produced again.

use herald_wiring::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct Replay {
    #[command(flatten)]
    args: herald_wiring::replay::ReplayArgs,
}

impl Replay {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        print!("{}", herald_wiring::replay::run(config, &self.args).await?);
        Ok(())
    }
}
