//! The settings of SendGrid v3 mail/send: `kind = "sendgrid"` under `[dispatch.providers.<name>]`.

use std::sync::Arc;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::SendgridProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits, Unsubscribe};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendgridSettings {
    pub api_key: SecretSource,
    /// Used when a message names no sender; must be a verified sender of the account.
    pub default_from: String,
    #[serde(default)]
    pub unsubscribe: Unsubscribe,
    /// Default `https://api.sendgrid.com`; EU-pinned accounts use
    /// `https://api.eu.sendgrid.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

impl ProviderKind for SendgridSettings {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Email]
    }

    fn limits(&self) -> ProviderLimits {
        self.limits.clone()
    }

    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(SendgridProvider::new(name, self)?))
    }
}
