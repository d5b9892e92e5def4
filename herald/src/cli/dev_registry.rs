//! `herald dev-registry`: the development schema registry alone (not for production).

use herald_runtime::shutdown;
use herald_testkit::DevRegistry;

#[derive(clap::Args, Debug)]
pub struct DevRegistryArgs {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
}

impl DevRegistryArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        let token = shutdown::on_signal();
        let listener = tokio::net::TcpListener::bind(self.listen).await?;
        tracing::info!(listen = %self.listen, "development schema registry listening");
        DevRegistry::default().serve(listener, async move { token.cancelled().await }).await?;
        Ok(())
    }
}
