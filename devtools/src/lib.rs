//! Herald's development tools: `herald dev` (the whole stack on this machine), `herald bench`
//! (benchmarks that print figures) and `herald chaos` (fault runs), on the test kit's engines
//! and the providers' stand-ins. The `herald` binary links them only with its `dev` feature,
//! so a production binary cannot start a sandbox or a stand-in by mistake.

pub mod bench;
pub mod chaos;
pub mod dev;

/// Serves the development schema registry alone on `listen` until Ctrl-C.
pub async fn serve_dev_registry(listen: std::net::SocketAddr) -> anyhow::Result<()> {
    let token = herald_runtime::shutdown::on_signal();
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(%listen, "development schema registry listening");
    let registry = herald_testkit::DevRegistry::default();
    registry.serve(listener, async move { token.cancelled().await }).await?;
    Ok(())
}
