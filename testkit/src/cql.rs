//! The run's CQL node (Apache Cassandra started by `infra/engines/cassandra.sh`), on which
//! the ScyllaDB stores' contract suites and the pipeline's CQL tests run.

use herald_runtime::scylla::ScyllaConfig;

use crate::engines::required;

/// A configuration for the run's CQL node (`HERALD_SCYLLA_URI`, `host:port[,host:port]`)
/// with a keyspace of the caller's own, named after `purpose` (letters, digits and
/// underscores), replication 1. `None` (the test is skipped, saying so) without a node,
/// unless `HERALD_REQUIRE_ENGINES` makes that a failure.
pub fn node(purpose: &str) -> Option<ScyllaConfig> {
    let uri = required("HERALD_SCYLLA_URI", "a CQL node")?;
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    Some(ScyllaConfig {
        nodes: uri.split(',').map(str::to_owned).collect(),
        keyspace: format!("{purpose}_{:x}", unique & 0xffff_ffff_ffff),
        replication_factor: 1,
        ..ScyllaConfig::default()
    })
}

/// An Apache Cassandra node of the caller's own (`infra/engines/cassandra.sh`): for a
/// benchmark or `herald dev` without a CQL node at hand. Stopped when dropped.
#[derive(Debug)]
pub struct CassandraNode {
    dir: std::path::PathBuf,
    address: String,
}

impl CassandraNode {
    /// Starts one with its data in `dir` (tens of seconds); it stops if this process dies.
    pub async fn start(dir: &std::path::Path) -> Result<Self, crate::EngineError> {
        let owner = std::process::id().to_string();
        let out = crate::engines::run_script(
            "cassandra.sh",
            &["start", &dir.to_string_lossy(), "--owner", &owner],
        )
        .await?;
        Ok(Self { dir: dir.to_owned(), address: out.trim().to_owned() })
    }

    /// `host:port` of its CQL port.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Its process, while it runs.
    pub fn pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("cassandra.pid")).ok()?.trim().parse().ok()
    }
}

impl Drop for CassandraNode {
    fn drop(&mut self) {
        let _ = std::process::Command::new(crate::engines::scripts_dir().join("cassandra.sh"))
            .arg("stop")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .status();
    }
}
