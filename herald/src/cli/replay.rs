//! `herald replay`: a topic's records of a window produced again.

use herald::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct Replay {
    #[command(flatten)]
    args: herald::replay::ReplayArgs,
}

impl Replay {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        print!("{}", herald::replay::run(config, &self.args).await?);
        Ok(())
    }
}
