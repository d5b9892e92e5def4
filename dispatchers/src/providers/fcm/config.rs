//! The settings of Firebase Cloud Messaging HTTP v1: `kind = "fcm"` under `[dispatch.providers.<name>]`.

use std::sync::Arc;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::FcmProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FcmSettings {
    /// The service-account key (JSON) of the Firebase project.
    pub credentials: SecretSource,
    /// Default `https://fcm.googleapis.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

impl ProviderKind for FcmSettings {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Android]
    }

    fn limits(&self) -> ProviderLimits {
        self.limits.clone()
    }

    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(FcmProvider::new(name, self)?))
    }
}
