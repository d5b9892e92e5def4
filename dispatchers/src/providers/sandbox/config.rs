//! The settings of the sandbox, which records instead of sending: `kind = "sandbox"` under `[dispatch.providers.<name>]`.

use std::path::PathBuf;
use std::sync::Arc;

use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

use super::SandboxProvider;
use crate::providers::{BuildError, Provider, ProviderKind, ProviderLimits};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxSettings {
    pub channel: Channel,
    /// JSON lines file; default `data/dispatch/sandbox-<name>.jsonl`.
    #[serde(default)]
    pub record_to: Option<PathBuf>,
    #[serde(default)]
    pub limits: ProviderLimits,
}

impl ProviderKind for SandboxSettings {
    fn channels(&self) -> Vec<Channel> {
        vec![self.channel]
    }

    fn limits(&self) -> ProviderLimits {
        self.limits.clone()
    }

    fn build(&self, name: &str) -> Result<Arc<dyn Provider>, BuildError> {
        let path = self
            .record_to
            .clone()
            .unwrap_or_else(|| format!("data/dispatch/sandbox-{name}.jsonl").into());
        Ok(Arc::new(SandboxProvider::to_file(name, &path)?))
    }
}
