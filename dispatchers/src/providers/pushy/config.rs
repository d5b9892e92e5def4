//! The settings of Pushy: `kind = "pushy"` under `[dispatch.providers.<name>]`.

use std::sync::Arc;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::PushyProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushySettings {
    /// The secret API key of the Pushy app.
    pub api_key: SecretSource,
    #[serde(default = "a_day")]
    pub time_to_live_secs: u64,
    /// Default `https://api.pushy.me`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

fn a_day() -> u64 {
    86_400
}

impl ProviderKind for PushySettings {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Android, Channel::Ios]
    }

    fn limits(&self) -> ProviderLimits {
        self.limits.clone()
    }

    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(PushyProvider::new(name, self)?))
    }
}
