//! The settings of Vonage (Nexmo) SMS API: `kind = "vonage"` under `[dispatch.providers.<name>]`.

use std::sync::Arc;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::VonageProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits, SmsOptions};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VonageSettings {
    pub api_key: String,
    pub api_secret: SecretSource,
    #[serde(default)]
    pub sms: SmsOptions,
    /// Default `https://rest.nexmo.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

impl ProviderKind for VonageSettings {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Sms]
    }

    fn limits(&self) -> ProviderLimits {
        self.limits.clone()
    }

    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(VonageProvider::new(name, self)?))
    }
}
