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
}

impl Default for EnricherConfig {
    fn default() -> Self {
        Self {
            directory_path: PathBuf::from("data/enricher/directory.db"),
            region_routes: RegionRoutes::default(),
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
