//! The roles of one process, run side by side: the send API, the enricher and the email
//! dispatcher. Used by `herald dev` and by the end-to-end tests.

use std::net::SocketAddr;

use herald_schemas::Channel;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::HeraldConfig;
use crate::roles::{self, GivenProviders};

/// Which roles run beside the send API.
#[derive(Debug, Clone, Copy)]
pub struct Roles<'a> {
    pub enricher: bool,
    /// A dispatcher for each.
    pub channels: &'a [Channel],
}

#[derive(Debug)]
pub struct Pipeline {
    api_addr: SocketAddr,
    shutdown: CancellationToken,
    tasks: JoinSet<anyhow::Result<()>>,
}

impl Pipeline {
    /// Starts the send API, the enricher and the email dispatcher; they stop when `shutdown`
    /// is cancelled (or [`Pipeline::stop`]).
    pub async fn start(
        config: HeraldConfig,
        api_listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Self::start_with(config, api_listener, &[Channel::Email], GivenProviders::new(), shutdown)
            .await
    }

    /// Like [`Pipeline::start`], with a dispatcher for each of `channels` and provider
    /// instances given by name.
    pub async fn start_with(
        config: HeraldConfig,
        api_listener: TcpListener,
        channels: &[Channel],
        given: GivenProviders,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let roles = Roles { enricher: true, channels };
        Self::start_roles(config, api_listener, roles, given, shutdown).await
    }

    /// The send API, and the other `roles`.
    pub async fn start_roles(
        config: HeraldConfig,
        api_listener: TcpListener,
        Roles { enricher, channels }: Roles<'_>,
        given: GivenProviders,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let api_addr = api_listener.local_addr()?;
        let mut tasks = JoinSet::new();
        let (c, s) = (config.clone(), shutdown.clone());
        tasks.spawn(async move { roles::ingest(&c, api_listener, s).await });
        if enricher {
            let (c, s) = (config.clone(), shutdown.clone());
            tasks.spawn(async move { roles::enricher(&c, s).await });
        }
        let given = std::sync::Arc::new(given);
        for channel in channels.iter().copied() {
            let (c, s, g) = (config.clone(), shutdown.clone(), std::sync::Arc::clone(&given));
            tasks.spawn(async move { roles::dispatcher(&c, channel, &g, s).await });
        }
        Ok(Self { api_addr, shutdown, tasks })
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// Runs until shutdown; a role failing stops the others too.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
            if let Err(e) = result {
                tracing::error!(error = %format!("{e:#}"), "a role stopped; stopping the others");
                self.shutdown.cancel();
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Stops every role (draining consumers) and waits for them.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.wait().await
    }
}
