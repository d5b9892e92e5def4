//! `herald ingest`: the send API, with its /healthz, /readyz and /metrics on `ops.listen`.

use anyhow::Context;
use herald_runtime::shutdown;
use herald_wiring::config::HeraldConfig;
use herald_wiring::roles;

#[derive(clap::Args, Debug)]
pub struct IngestArgs {}

impl IngestArgs {
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let listener = tokio::net::TcpListener::bind(config.ingest.listen)
            .await
            .with_context(|| format!("binding {}", config.ingest.listen))?;
        let token = shutdown::on_signal();
        let (role, ops) = tokio::join!(
            roles::ingest(config, listener, token.clone()),
            roles::ingest_ops(config, token)
        );
        role.and(ops)
    }
}
