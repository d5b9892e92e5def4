//! `herald dev-registry`: the development schema registry alone (not for production).

#[derive(clap::Args, Debug)]
pub struct DevRegistryArgs {
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: std::net::SocketAddr,
}

impl DevRegistryArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        herald_devtools::serve_dev_registry(self.listen).await
    }
}
