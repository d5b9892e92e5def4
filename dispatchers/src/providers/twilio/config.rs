//! The settings of Twilio Programmable Messaging: `kind = "twilio"` under `[dispatch.providers.<name>]`.

use std::sync::Arc;

use herald_runtime::SecretSource;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::TwilioProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits, SmsOptions};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSettings {
    pub account_sid: String,
    pub auth_token: SecretSource,
    /// Send through a Messaging Service (its sender pool) instead of `sms.from`.
    #[serde(default)]
    pub messaging_service_sid: Option<String>,
    /// Where Twilio posts delivery status callbacks.
    #[serde(default)]
    pub status_callback: Option<String>,
    #[serde(default)]
    pub sms: SmsOptions,
    /// Default `https://api.twilio.com`.
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

impl ProviderKind for TwilioSettings {
    fn channels(&self) -> Vec<Channel> {
        vec![Channel::Sms]
    }

    fn limits(&self) -> ProviderLimits {
        self.limits.clone()
    }

    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        Ok(Arc::new(TwilioProvider::new(name, self)?))
    }
}
