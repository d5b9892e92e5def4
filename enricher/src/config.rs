use std::collections::BTreeMap;
use std::path::PathBuf;

use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

/// `[enricher]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnricherConfig {
    /// The embedded directory (SQLite): users, devices, preferences.
    pub directory_path: PathBuf,
    /// Per dispatch channel, the route of users by region (e.g. `android.CN = "china"`):
    /// dispatchers map routes to providers. Users of other regions take `default`.
    pub region_routes: RegionRoutes,
    /// Per category, where a push goes when the user has no active device or the push fails
    /// for good: `fallback.security = { push = "sms" }` (sms or email).
    pub fallback: Fallbacks,
}

/// Category -> requested channel -> the channel it falls back to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fallbacks(BTreeMap<String, BTreeMap<String, Channel>>);

impl Fallbacks {
    pub fn new(rules: BTreeMap<String, BTreeMap<String, Channel>>) -> Self {
        Self(rules)
    }

    /// Where a push of `category` falls back to, if anywhere.
    pub fn for_push(&self, category: &str) -> Option<Channel> {
        self.0.get(category)?.get("push").copied()
    }

    /// Only push falls back, and only to sms or email.
    pub fn validate(&self) -> Result<(), String> {
        for (category, rules) in &self.0 {
            for (from, to) in rules {
                if from != "push" || !matches!(to, Channel::Sms | Channel::Email) {
                    return Err(format!(
                        "enricher.fallback.{category}: {from} -> {to} is not supported (push -> sms or email)"
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What decides where each message goes, besides the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub routes: RegionRoutes,
    pub fallbacks: Fallbacks,
}

impl From<&EnricherConfig> for Rules {
    fn from(config: &EnricherConfig) -> Self {
        Self { routes: config.region_routes.clone(), fallbacks: config.fallback.clone() }
    }
}

impl Default for EnricherConfig {
    fn default() -> Self {
        Self {
            directory_path: PathBuf::from("data/enricher/directory.db"),
            region_routes: RegionRoutes::default(),
            fallback: Fallbacks::default(),
        }
    }
}

/// Channel -> region -> route.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RegionRoutes(BTreeMap<Channel, BTreeMap<String, String>>);

impl RegionRoutes {
    pub fn new(routes: BTreeMap<Channel, BTreeMap<String, String>>) -> Self {
        Self(routes)
    }

    /// The route of a `channel` message to a user in `region` (ISO 3166 code, any case).
    pub fn route(&self, channel: Channel, region: Option<&str>) -> &str {
        let by_region = self.0.get(&channel);
        region
            .and_then(|r| by_region?.get(&r.to_ascii_uppercase()))
            .map_or("default", String::as_str)
    }

    /// Regions must be written as upper-case ISO codes so that lookups find them.
    pub fn validate(&self) -> Result<(), String> {
        for (channel, regions) in &self.0 {
            if let Some(region) = regions.keys().find(|r| **r != r.to_ascii_uppercase()) {
                return Err(format!(
                    "enricher.region_routes.{channel}: write region {region:?} in upper case"
                ));
            }
        }
        Ok(())
    }
}
