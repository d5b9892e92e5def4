//! The settings of JPush (Jiguang) push API v3: `kind = "jpush"` under `[dispatch.providers.<name>]`.

use std::sync::Arc;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::JpushProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JpushSettings {
    pub app_key: String,
    pub master_secret: SecretSource,
    /// For ios through JPush: the APNs environment JPush forwards to.
    #[serde(default = "yes")]
    pub apns_production: bool,
    /// Offline messages kept this long (JPush's default is a day, at most ten).
    #[serde(default = "a_day")]
    pub time_to_live_secs: u64,
    /// Default `https://api.jpush.cn`; apps in JPush's Beijing region may use
    /// `https://bjapi.push.jiguang.cn`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

fn a_day() -> u64 {
    86_400
}

fn yes() -> bool {
    true
}

impl ProviderKind for JpushSettings {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Android, Channel::Ios]
    }

    fn limits(&self) -> ProviderLimits {
        self.limits.clone()
    }

    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(JpushProvider::new(name, self)?))
    }
}
