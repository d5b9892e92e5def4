//! `herald ingest`: the send API.

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
        roles::ingest(config, listener, shutdown::on_signal()).await
    }
}
