//! `herald groups`: consumer groups' lag, members and offset resets.

use herald_wiring::config::HeraldConfig;
use herald_wiring::groups::GroupsCommand;

#[derive(clap::Args, Debug)]
pub struct GroupsArgs {
    #[command(subcommand)]
    command: GroupsCommand,
}

impl GroupsArgs {
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        self.command.run(config).await
    }
}
