//! `herald enrich`: the enricher, with its /healthz, /readyz and /metrics.

use herald_runtime::shutdown;
use herald_wiring::config::HeraldConfig;
use herald_wiring::roles;

#[derive(clap::Args, Debug)]
pub struct EnrichArgs {}

impl EnrichArgs {
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let token = shutdown::on_signal();
        let (role, ops) =
            tokio::join!(roles::enricher(config, token.clone()), roles::ops(config, token));
        role.and(ops)
    }
}
