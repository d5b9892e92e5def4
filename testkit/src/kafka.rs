//! Apache Kafka clusters started by `infra/engines/kafka.sh` (each broker its own JVM), and
//! Kafka's own command-line tools, for tests that need a broker of their own: broker faults,
//! a cluster of three. The suite's shared single broker is started once per run by
//! `infra/test.sh` and found through `HERALD_TEST_KAFKA`.

use std::path::{Path, PathBuf};

use herald_runtime::KafkaConfig;

use crate::engines::{EngineError, run_script, scripts_dir};

/// A running cluster; stopped (every broker, gone before this returns) when dropped.
#[derive(Debug)]
pub struct KafkaCluster {
    dir: PathBuf,
    bootstrap_servers: String,
    brokers: u32,
}

impl KafkaCluster {
    /// Formats and starts `brokers` brokers with their data in `dir` (one: replication 1;
    /// three: replication 3 and min.insync.replicas=2). They stop if this process dies.
    pub async fn start(dir: &Path, brokers: u32) -> Result<Self, EngineError> {
        let dir_arg = dir.to_string_lossy();
        let owner = std::process::id().to_string();
        let brokers_arg = brokers.to_string();
        let out = run_script(
            "kafka.sh",
            &["start", &dir_arg, "--brokers", &brokers_arg, "--owner", &owner],
        )
        .await?;
        Ok(Self { dir: dir.to_owned(), bootstrap_servers: out.trim().to_owned(), brokers })
    }

    pub fn bootstrap_servers(&self) -> &str {
        &self.bootstrap_servers
    }

    pub fn brokers(&self) -> u32 {
        self.brokers
    }

    /// The brokers' processes that run now.
    pub fn pids(&self) -> Vec<u32> {
        (1..=self.brokers)
            .filter_map(|node| {
                let pidfile = self.dir.join(format!("node-{node}/kafka.pid"));
                std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
            })
            .collect()
    }

    /// A configuration for this cluster with the short group timings of the tests.
    pub fn kafka_config(&self) -> KafkaConfig {
        let mut config = KafkaConfig::default().with_dev_timings();
        config.bootstrap_servers = self.bootstrap_servers.clone();
        config
    }

    /// SIGKILLs broker `node` (1-based, as its node.id) and waits until it is gone.
    pub async fn kill(&self, node: i32) -> Result<(), EngineError> {
        self.node("kill", node).await
    }

    /// Stops broker `node` cleanly (SIGTERM: a controlled shutdown hands its leaderships over
    /// first) and waits until it is gone.
    pub async fn stop_node(&self, node: i32) -> Result<(), EngineError> {
        self.node("stop-node", node).await
    }

    /// Starts broker `node` again with its data and waits until it says it started.
    pub async fn restart(&self, node: i32) -> Result<(), EngineError> {
        self.node("restart", node).await
    }

    async fn node(&self, action: &str, node: i32) -> Result<(), EngineError> {
        run_script("kafka.sh", &[action, &self.dir.to_string_lossy(), &node.to_string()])
            .await
            .map(drop)
    }

    /// Runs one of Kafka's own tools (`consumer-groups`, `topics`, `get-offsets` or a class
    /// name) against this cluster.
    pub fn tool(&self, tool: &str, args: &[&str]) -> std::io::Result<std::process::Output> {
        kafka_tool(Some(&self.dir), tool, args)
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        let _ = std::process::Command::new(scripts_dir().join("kafka.sh"))
            .arg("stop")
            .arg(&self.dir)
            .stdin(std::process::Stdio::null())
            .status();
    }
}

/// Runs one of Kafka's own tools through `infra/engines/kafka.sh tool`, with the class path
/// of the cluster started in `dir` (any pinned Kafka if `None`).
pub fn kafka_tool(
    dir: Option<&Path>,
    tool: &str,
    args: &[&str],
) -> std::io::Result<std::process::Output> {
    let dir = dir.map_or_else(|| PathBuf::from("/nonexistent"), Path::to_owned);
    std::process::Command::new(scripts_dir().join("kafka.sh"))
        .arg("tool")
        .arg(dir)
        .arg(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
}
