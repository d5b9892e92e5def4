//! `herald config`: the effective configuration, secrets redacted.

use anyhow::Context;
use herald_wiring::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct ConfigArgs {}

impl ConfigArgs {
    #[allow(clippy::print_stdout)]
    pub fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        print!("{}", config.to_toml().context("writing the configuration as TOML")?);
        Ok(())
    }
}
