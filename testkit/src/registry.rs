//! An Apicurio Registry of a test's own, started by `infra/engines/apicurio.sh`, for what
//! the run's shared one must not go through: an outage.

use std::path::{Path, PathBuf};

use crate::engines::{EngineError, run_script, scripts_dir};

/// A running registry; stopped when dropped.
#[derive(Debug)]
pub struct Apicurio {
    dir: PathBuf,
    url: String,
}

impl Apicurio {
    /// Starts one with its data in `dir`; it stops if this process dies.
    pub async fn start(dir: &Path) -> Result<Self, EngineError> {
        let owner = std::process::id().to_string();
        let out = run_script("apicurio.sh", &["start", &dir.to_string_lossy(), "--owner", &owner])
            .await?;
        Ok(Self { dir: dir.to_owned(), url: out.trim().to_owned() })
    }

    /// The Confluent-compatible API's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// SIGKILLs it: an outage.
    pub async fn kill(&self) -> Result<(), EngineError> {
        run_script("apicurio.sh", &["kill", &self.dir.to_string_lossy()]).await.map(drop)
    }

    /// Starts it again at the same URL, with what it had registered.
    pub async fn restart(&self) -> Result<(), EngineError> {
        run_script("apicurio.sh", &["restart", &self.dir.to_string_lossy()]).await.map(drop)
    }
}

impl Drop for Apicurio {
    fn drop(&mut self) {
        let _ = std::process::Command::new(scripts_dir().join("apicurio.sh"))
            .arg("stop")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .status();
    }
}
