//! `herald dispatch --channel <channel>`: one channel's dispatcher, with its ops endpoints.

use herald_runtime::shutdown;
use herald_schemas::Channel;
use herald_wiring::config::HeraldConfig;
use herald_wiring::roles;

#[derive(clap::Args, Debug)]
pub struct DispatchArgs {
    #[arg(long)]
    channel: Channel,
}

impl DispatchArgs {
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let token = shutdown::on_signal();
        let none = roles::GivenProviders::new();
        let (role, ops) = tokio::join!(
            roles::dispatcher(config, self.channel, &none, token.clone()),
            roles::ops(config, token)
        );
        role.and(ops)
    }
}
