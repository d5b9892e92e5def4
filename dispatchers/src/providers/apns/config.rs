//! The settings of Apple Push Notification service (HTTP/2, token or certificate auth): `kind = "apns"` under `[dispatch.providers.<name>]`.

use std::collections::BTreeMap;
use std::sync::Arc;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::ApnsProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApnsSettings {
    pub auth: ApnsAuth,
    /// `apns-topic` (the app's bundle id) for devices whose app is not listed in `topics`.
    pub topic: String,
    /// App id -> topic: one provider-token key serves every app of a team.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
    /// Default `https://api.push.apple.com`; development builds use
    /// `https://api.sandbox.push.apple.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// HTTP/2 connections the sends are spread over (`limits.concurrency` is shared).
    #[serde(default = "apns_connections")]
    pub connections: usize,
    #[serde(default)]
    pub limits: ProviderLimits,
}

/// HTTP/2 connections per APNs account unless configured.
pub const DEFAULT_APNS_CONNECTIONS: usize = 4;

fn apns_connections() -> usize {
    DEFAULT_APNS_CONNECTIONS
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum ApnsAuth {
    /// Provider tokens (ES256 JWTs) signed with a .p8 key from Apple.
    Token { team_id: String, key_id: String, key: SecretSource },
    /// A TLS client certificate and its key, PEM.
    Certificate { identity: SecretSource },
}

impl ProviderKind for ApnsSettings {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Ios]
    }

    fn limits(&self) -> ProviderLimits {
        self.limits.clone()
    }

    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(ApnsProvider::new(name, self)?))
    }
}
