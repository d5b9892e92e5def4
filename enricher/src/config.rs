use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[enricher]` section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnricherConfig {
    /// The embedded directory (SQLite): users, devices, preferences.
    pub directory_path: PathBuf,
}

impl Default for EnricherConfig {
    fn default() -> Self {
        Self { directory_path: PathBuf::from("data/enricher/directory.db") }
    }
}
