//! The providers of a channel, built from configuration: each named provider account with
//! its limits (concurrent sends, sends per second, the pause a 429 imposes), and the routes
//! that say which providers serve which route (the enricher sets a message's route, e.g. by
//! region), in order of preference.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use herald_schemas::Channel;
use tokio::sync::{Semaphore, SemaphorePermit};

use super::fcm::FcmProvider;
use super::limits::RateLimiter;
use super::sandbox::SandboxProvider;
use super::smtp::SmtpProvider;
use super::{DeliveryError, Provider, Sent};
use crate::config::{DispatchConfig, ProviderConfig, ProviderLimits};
use herald_schemas::ChannelMessage;

/// One provider account and its limits.
pub struct ProviderHandle {
    name: String,
    provider: Arc<dyn Provider>,
    slots: Semaphore,
    limiter: RateLimiter,
}

impl std::fmt::Debug for ProviderHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderHandle").field("name", &self.name).finish_non_exhaustive()
    }
}

impl ProviderHandle {
    pub fn new(name: &str, provider: Arc<dyn Provider>, limits: &ProviderLimits) -> Self {
        Self {
            name: name.to_owned(),
            provider,
            slots: Semaphore::new(limits.concurrency.max(1)),
            limiter: RateLimiter::new(limits.rate_per_second),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for a free send slot and the rate limit. Hold the permit from the ledger claim
    /// until the ledger knows the outcome.
    pub async fn slot(&self) -> Option<SemaphorePermit<'_>> {
        let permit = self.slots.acquire().await.ok()?;
        self.limiter.acquire().await;
        Some(permit)
    }

    /// Sends; a "slow down" answer holds back every send to this provider.
    pub async fn send(&self, message: &ChannelMessage) -> Result<Sent, DeliveryError> {
        let result = self.provider.send(message).await;
        if let Err(DeliveryError::Transient { retry_after: Some(wait), .. }) = &result {
            self.limiter.pause_for(*wait);
        }
        result
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "route {route:?} of channel {channel} names provider {provider:?}, which is not configured"
    )]
    Unknown { channel: Channel, route: String, provider: String },
    #[error("provider {provider:?} ({kind}) cannot serve channel {channel}")]
    WrongChannel { provider: String, kind: &'static str, channel: Channel },
    #[error("channel {0} has no route named \"default\"")]
    NoDefault(Channel),
    #[error("cannot set up provider {provider:?}: {reason}")]
    Setup { provider: String, reason: String },
}

/// The providers of one channel by route.
#[derive(Debug)]
pub struct Routes {
    channel: Channel,
    routes: HashMap<String, Vec<Arc<ProviderHandle>>>,
}

/// Channel of each provider kind; `None`: any (sandbox).
fn kind_channel(config: &ProviderConfig) -> (&'static str, Option<Channel>) {
    match config {
        ProviderConfig::Smtp(_) => ("smtp", Some(Channel::Email)),
        ProviderConfig::Fcm(_) => ("fcm", Some(Channel::Android)),
        ProviderConfig::Sandbox(s) => ("sandbox", Some(s.channel)),
    }
}

impl Routes {
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The providers of `route`, best first; unknown routes use the channel's default.
    pub fn providers(&self, route: &str) -> &[Arc<ProviderHandle>] {
        self.routes.get(route).or_else(|| self.routes.get("default")).map_or(&[], Vec::as_slice)
    }

    /// Every provider named by the channel's routes, built once each. `given` supplies
    /// ready instances by name (e.g. `herald dev`'s in-memory sandboxes) and wins over
    /// configuration.
    pub fn build(
        channel: Channel,
        config: &DispatchConfig,
        given: &HashMap<String, (Arc<dyn Provider>, ProviderLimits)>,
    ) -> Result<Self, RegistryError> {
        let routes = config.routes_of(channel);
        if !routes.contains_key("default") {
            return Err(RegistryError::NoDefault(channel));
        }
        let mut built: HashMap<String, Arc<ProviderHandle>> = HashMap::new();
        let mut by_route = HashMap::new();
        for (route, names) in routes {
            let mut handles = Vec::new();
            for name in names {
                if let Some(handle) = built.get(&name) {
                    handles.push(Arc::clone(handle));
                    continue;
                }
                let handle = if let Some((provider, limits)) = given.get(&name) {
                    ProviderHandle::new(&name, Arc::clone(provider), limits)
                } else {
                    let unknown = || RegistryError::Unknown {
                        channel,
                        route: route.clone(),
                        provider: name.clone(),
                    };
                    let settings = config.provider(&name).ok_or_else(unknown)?;
                    build_one(&name, &settings, channel)?
                };
                let handle = Arc::new(handle);
                built.insert(name.clone(), Arc::clone(&handle));
                handles.push(handle);
            }
            by_route.insert(route, handles);
        }
        Ok(Self { channel, routes: by_route })
    }
}

fn build_one(
    name: &str,
    settings: &ProviderConfig,
    channel: Channel,
) -> Result<ProviderHandle, RegistryError> {
    let (kind, serves) = kind_channel(settings);
    if serves != Some(channel) {
        return Err(RegistryError::WrongChannel { provider: name.to_owned(), kind, channel });
    }
    let setup = |e: &dyn std::fmt::Display| RegistryError::Setup {
        provider: name.to_owned(),
        reason: e.to_string(),
    };
    let (provider, limits): (Arc<dyn Provider>, ProviderLimits) = match settings {
        ProviderConfig::Smtp(email) => {
            let limits = ProviderLimits {
                concurrency: usize::try_from(email.smtp.pool_size).unwrap_or(1),
                timeout_ms: email.smtp.timeout_ms,
                rate_per_second: email.rate_per_second,
            };
            (Arc::new(SmtpProvider::new(email).map_err(|e| setup(&e))?), limits)
        }
        ProviderConfig::Fcm(fcm) => {
            (Arc::new(FcmProvider::new(name, fcm).map_err(|e| setup(&e))?), fcm.limits.clone())
        }
        ProviderConfig::Sandbox(sandbox) => {
            let path = sandbox
                .record_to
                .clone()
                .unwrap_or_else(|| format!("data/dispatch/sandbox-{name}.jsonl").into());
            (
                Arc::new(SandboxProvider::to_file(name, &path).map_err(|e| setup(&e))?),
                sandbox.limits.clone(),
            )
        }
    };
    Ok(ProviderHandle::new(name, provider, &limits))
}

/// Default routes: email through the SMTP relay of `[dispatch.email]`.
pub fn default_routes() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    BTreeMap::from([(
        "email".to_owned(),
        BTreeMap::from([("default".to_owned(), vec!["smtp".to_owned()])]),
    )])
}
