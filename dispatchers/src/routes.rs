//! The providers of a channel, built from configuration: each named provider account with
//! its limits (concurrent sends, sends per second, the pause a 429 imposes), and the routes
//! that say which providers serve which route (the enricher sets a message's route, e.g. by
//! region), in order of preference.

use std::collections::HashMap;
use std::sync::Arc;

use herald_schemas::Channel;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::DispatchConfig;
use crate::providers::limits::RateLimiter;
use crate::providers::{
    Admission, Breaker, DeliveryError, Provider, ProviderConfig, ProviderLimits, Sent,
};
use herald_schemas::{ChannelMessage, Lane};

/// One provider account and its limits.
pub struct ProviderHandle {
    name: String,
    provider: Arc<dyn Provider>,
    slots: Semaphore,
    /// The share of `slots` the bulk lane may hold: the rest stays free for urgent sends.
    bulk_slots: Semaphore,
    limiter: RateLimiter,
    breaker: Breaker,
}

/// The send slots one send holds until the ledger knows its outcome.
#[derive(Debug)]
pub struct Slot<'a> {
    _send: SemaphorePermit<'a>,
    _bulk: Option<SemaphorePermit<'a>>,
}

/// Send slots kept free of bulk traffic: a quarter, at least one when there are two.
fn urgent_reserve(concurrency: usize) -> usize {
    if concurrency < 2 { 0 } else { (concurrency / 4).max(1) }
}

/// Which provider a message goes to now.
#[derive(Debug)]
pub enum Pick<'a> {
    /// `probe`: the provider is out of its routes and this send checks on it.
    Send { provider: &'a Arc<ProviderHandle>, probe: bool },
    /// Every provider of the route is failing: hold the message (and its partition) instead
    /// of spending its retries, until `until_ms` at the earliest.
    Held { until_ms: i64 },
    /// The route has no provider at all.
    NoProvider,
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
            bulk_slots: Semaphore::new(
                limits.concurrency.max(1) - urgent_reserve(limits.concurrency.max(1)),
            ),
            limiter: RateLimiter::new(limits.rate_per_second),
            breaker: Breaker::new(limits.breaker_failures, limits.breaker_open_ms),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Not taken out of its routes for failing.
    pub fn is_healthy(&self) -> bool {
        self.breaker.is_closed()
    }

    /// Waits for a free send slot and the rate limit. Hold the slot from the ledger claim
    /// until the ledger knows the outcome. Bulk sends never hold every slot, so an urgent
    /// send waits for at most the sends already under way, not for a bulk backlog.
    pub async fn slot(&self, lane: Lane) -> Option<Slot<'_>> {
        // Bulk takes its share first: a bulk send waiting for its share is not in the queue
        // for send slots, ahead of urgent ones.
        let bulk = match lane {
            Lane::Bulk => Some(self.bulk_slots.acquire().await.ok()?),
            Lane::Urgent => None,
        };
        let send = self.slots.acquire().await.ok()?;
        self.limiter.acquire().await;
        Some(Slot { _send: send, _bulk: bulk })
    }

    /// Sends; a "slow down" answer holds back every send to this provider.
    pub async fn send(&self, message: &ChannelMessage) -> Result<Sent, DeliveryError> {
        let result = self.provider.send(message).await;
        if let Err(DeliveryError::Transient { retry_after: Some(wait), .. }) = &result {
            self.limiter.pause_for(*wait);
        }
        let transient = matches!(result, Err(DeliveryError::Transient { .. }));
        self.breaker.record(&self.name, transient, herald_schemas::now_millis());
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
    #[error("routes name channel {0:?}, which is not one of email, sms, ios, android")]
    UnknownChannel(String),
    #[error("cannot set up provider {provider:?}: {reason}")]
    Setup { provider: String, reason: String },
}

/// The providers of one channel by route, and by app where an app has its own. A clone
/// shares the providers, their limits and their breakers.
#[derive(Debug, Clone)]
pub struct Routes {
    channel: Channel,
    routes: HashMap<String, Vec<Arc<ProviderHandle>>>,
    apps: HashMap<String, Vec<Arc<ProviderHandle>>>,
}

/// Checks without building anything (no secrets read, no connections) that every route
/// names a configured provider able to serve its channel, and that each channel with routes
/// has a default one. Run at start-up by every role.
pub fn check(config: &DispatchConfig) -> Result<(), RegistryError> {
    let parse = |name: &str| {
        name.parse::<Channel>().map_err(|_| RegistryError::UnknownChannel(name.to_owned()))
    };
    for (channel, routes) in &config.routes {
        let channel = parse(channel)?;
        if !routes.contains_key("default") {
            return Err(RegistryError::NoDefault(channel));
        }
    }
    let all = config.routes.iter().chain(&config.app_routes);
    for (channel, routes) in all {
        let channel = parse(channel)?;
        for (route, names) in routes {
            for name in names {
                let settings = config.provider(name).ok_or_else(|| RegistryError::Unknown {
                    channel,
                    route: route.clone(),
                    provider: name.clone(),
                })?;
                if !settings.channels().contains(&channel) {
                    let (provider, kind) = (name.clone(), settings.kind());
                    return Err(RegistryError::WrongChannel { provider, kind, channel });
                }
            }
        }
    }
    Ok(())
}

/// The longest call any configured provider may take.
pub fn longest_timeout_ms(config: &DispatchConfig) -> u64 {
    let timeouts = config.providers.values().map(|p| p.limits().timeout_ms);
    timeouts.fold(config.email.smtp.timeout_ms, u64::max)
}

impl Routes {
    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The names of every provider the routes use.
    pub fn provider_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .routes
            .values()
            .chain(self.apps.values())
            .flatten()
            .map(|p| p.name.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The providers for a message of `app` on `route`, best first: the app's own if it has
    /// some, else the route's; unknown routes use the channel's default.
    pub fn providers(&self, route: &str, app: Option<&str>) -> &[Arc<ProviderHandle>] {
        let by_app = app.and_then(|a| self.apps.get(a));
        by_app
            .or_else(|| self.routes.get(route))
            .or_else(|| self.routes.get("default"))
            .map_or(&[], Vec::as_slice)
    }

    /// The provider to try now: the best one not taken out for failing.
    pub fn pick(&self, route: &str, app: Option<&str>) -> Pick<'_> {
        let providers = self.providers(route, app);
        let now = herald_schemas::now_millis();
        for provider in providers {
            match provider.breaker.admit(now) {
                Admission::Closed => return Pick::Send { provider, probe: false },
                Admission::Probe => return Pick::Send { provider, probe: true },
                Admission::Refused => {}
            }
        }
        match providers.iter().map(|p| p.breaker.open_until()).min() {
            Some(until_ms) => Pick::Held { until_ms },
            None => Pick::NoProvider,
        }
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
        let mut by_app = HashMap::new();
        let apps = config.app_routes_of(channel).into_iter().map(|(app, names)| (app, names, true));
        let all = routes.into_iter().map(|(route, names)| (route, names, false)).chain(apps);
        for (route, names, is_app) in all {
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
            if is_app {
                by_app.insert(route, handles);
            } else {
                by_route.insert(route, handles);
            }
        }
        Ok(Self { channel, routes: by_route, apps: by_app })
    }
}

fn build_one(
    name: &str,
    settings: &ProviderConfig,
    channel: Channel,
) -> Result<ProviderHandle, RegistryError> {
    if !settings.channels().contains(&channel) {
        let (provider, kind) = (name.to_owned(), settings.kind());
        return Err(RegistryError::WrongChannel { provider, kind, channel });
    }
    let provider = settings
        .build(name)
        .map_err(|e| RegistryError::Setup { provider: name.to_owned(), reason: e.to_string() })?;
    Ok(ProviderHandle::new(name, provider, &settings.limits()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::providers::sandbox::{Recordings, SandboxProvider};

    fn handle(concurrency: usize) -> ProviderHandle {
        let provider = Arc::new(SandboxProvider::in_memory("sandbox", Recordings::default()));
        let limits = ProviderLimits { concurrency, ..ProviderLimits::default() };
        ProviderHandle::new("sandbox", provider, &limits)
    }

    async fn blocked(slot: impl Future) -> bool {
        tokio::time::timeout(Duration::from_millis(50), slot).await.is_err()
    }

    #[tokio::test]
    async fn bulk_sends_leave_a_quarter_of_the_slots_to_urgent_ones() {
        let provider = handle(8);
        let mut held = Vec::new();
        for _ in 0..6 {
            held.push(provider.slot(Lane::Bulk).await.unwrap());
        }
        assert!(blocked(provider.slot(Lane::Bulk)).await, "bulk holds at most 6 of 8");
        let urgent = [provider.slot(Lane::Urgent).await, provider.slot(Lane::Urgent).await];
        assert!(urgent.iter().all(Option::is_some), "the reserve is free at once");
        assert!(blocked(provider.slot(Lane::Urgent)).await, "8 in all");
        drop(held);
        assert!(provider.slot(Lane::Bulk).await.is_some());
        assert_eq!(urgent_reserve(1), 0, "one slot is shared");
    }
}
