//! `[enricher]`: where the directory lives and how it is cached, routes by region, fallbacks,
//! frequency caps, quiet hours and the categories that pass them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use herald_runtime::scylla::ScyllaConfig;
use herald_schemas::Channel;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DirectoryBackend {
    /// The embedded store, `directory_path`: one enricher machine.
    Sqlite,
    /// ScyllaDB, `scylla`: shared by every enricher process (`herald migrate` creates it).
    Scylla,
}

/// `[enricher]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnricherConfig {
    /// Where the directory (users, devices, preferences, templates) lives.
    pub directory_backend: DirectoryBackend,
    /// The embedded directory's file, for `directory_backend = "sqlite"`.
    pub directory_path: PathBuf,
    /// The ScyllaDB nodes and keyspace, for `directory_backend = "scylla"`.
    pub scylla: ScyllaConfig,
    /// How long a directory read is reused at most. A change written to the directory's
    /// topics (the API, an import, a service) drops what it changes from every enricher's
    /// cache as it is applied; only a write made in the store by hand waits out this time.
    pub cache_ttl_ms: u64,
    /// Entries kept per directory table (users, devices, preferences, templates).
    pub cache_max_entries: u64,
    /// Per dispatch channel, the route of users by region (e.g. `android.CN = "china"`):
    /// dispatchers map routes to providers. Users of other regions take `default`.
    pub region_routes: RegionRoutes,
    /// Per category, where a push goes when the user has no active device or the push fails
    /// for good: `fallback.security = { push = "sms" }` (sms or email).
    pub fallback: Fallbacks,
    /// Categories that reach users whatever their opt-outs and quiet hours say.
    pub critical_categories: Vec<String>,
    /// Per category and requested channel, at most this many notifications per user and day
    /// (the user's day): `frequency_caps.marketing = { push = 3, sms = 1 }`.
    pub frequency_caps: FrequencyCaps,
    /// How long a directory API write (served by `herald ingest`) waits for the enricher to
    /// apply it; past this it is answered 202, durable and to be applied.
    pub directory_api_wait_ms: u64,
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

/// Category -> requested channel (email, sms, push) -> notifications per user and day.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct FrequencyCaps(BTreeMap<String, BTreeMap<String, u32>>);

impl FrequencyCaps {
    pub fn new(caps: BTreeMap<String, BTreeMap<String, u32>>) -> Self {
        Self(caps)
    }

    /// The daily cap of `category` on requested `channel`, if there is one.
    pub fn limit(&self, category: &str, channel: &str) -> Option<u32> {
        self.0.get(category)?.get(channel).copied()
    }

    /// Caps name requestable channels.
    pub fn validate(&self) -> Result<(), String> {
        for (category, caps) in &self.0 {
            if let Some(channel) =
                caps.keys().find(|c| !herald_schemas::RequestedChannel::is_name(c))
            {
                return Err(format!(
                    "enricher.frequency_caps.{category}: unknown channel {channel:?} (email, sms or push)"
                ));
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
    pub critical: Vec<String>,
    pub caps: FrequencyCaps,
}

impl Rules {
    /// Whether `category` bypasses opt-outs and quiet hours.
    pub fn is_critical(&self, category: &str) -> bool {
        self.critical.iter().any(|c| c == category)
    }
}

impl From<&EnricherConfig> for Rules {
    fn from(config: &EnricherConfig) -> Self {
        Self {
            routes: config.region_routes.clone(),
            fallbacks: config.fallback.clone(),
            critical: config.critical_categories.clone(),
            caps: config.frequency_caps.clone(),
        }
    }
}

impl Default for EnricherConfig {
    fn default() -> Self {
        Self {
            directory_backend: DirectoryBackend::Sqlite,
            directory_path: PathBuf::from("data/enricher/directory.db"),
            scylla: ScyllaConfig::default(),
            cache_ttl_ms: 30_000,
            cache_max_entries: 100_000,
            region_routes: RegionRoutes::default(),
            fallback: Fallbacks::default(),
            critical_categories: vec!["security".into(), "transactional".into()],
            frequency_caps: FrequencyCaps::default(),
            directory_api_wait_ms: 5_000,
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
