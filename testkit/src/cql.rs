//! The run's CQL node (Apache Cassandra started by `infra/engines/cassandra.sh`), on which
//! the ScyllaDB stores' contract suites and the pipeline's CQL tests run.

use std::path::{Path, PathBuf};

use herald_runtime::config::SecretSource;
use herald_runtime::scylla::{CqlTls, ScyllaConfig};

use crate::engines::required;

/// A configuration for the run's CQL node (`HERALD_SCYLLA_URI`, `host:port[,host:port]`)
/// with a keyspace of the caller's own, named after `purpose` (letters, digits and
/// underscores), replication 1, and the node's TLS and login settings ([`at`]). `None` (the
/// test is skipped, saying so) without a node, unless `HERALD_REQUIRE_ENGINES` makes that a
/// failure.
pub fn node(purpose: &str) -> Option<ScyllaConfig> {
    let uri = required("HERALD_SCYLLA_URI", "a CQL node")?;
    let unique = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
        ^ u128::from(std::process::id());
    Some(at(&uri, &format!("{purpose}_{:x}", unique & 0xffff_ffff_ffff)))
}

/// A configuration for the nodes `uri` (`host:port[,host:port]`) and `keyspace`, with the
/// TLS and login settings `infra/engines/cassandra.sh` exports (`HERALD_TEST_CQL_CA`,
/// `_CERT`, `_KEY`, `_USERNAME`, `_PASSWORD_FILE`; the ones not set stay unset).
pub fn at(uri: &str, keyspace: &str) -> ScyllaConfig {
    from_vars(uri, keyspace, |name| std::env::var(name).ok())
}

/// A configuration from the `HERALD_TEST_CQL_*` variables as `var` gives them: the process's
/// environment, or the env file `cassandra.sh` wrote.
fn from_vars(uri: &str, keyspace: &str, var: impl Fn(&str) -> Option<String>) -> ScyllaConfig {
    let path = |name: &str| var(name).map(PathBuf::from);
    let (ca_file, cert_file) = (path("HERALD_TEST_CQL_CA"), path("HERALD_TEST_CQL_CERT"));
    let tls = (ca_file.is_some() || cert_file.is_some()).then(|| CqlTls {
        ca_file,
        cert_file,
        key_file: path("HERALD_TEST_CQL_KEY"),
        server_name: None,
    });
    ScyllaConfig {
        nodes: uri.split(',').map(str::to_owned).collect(),
        keyspace: keyspace.to_owned(),
        username: var("HERALD_TEST_CQL_USERNAME"),
        password: var("HERALD_TEST_CQL_PASSWORD_FILE").map(SecretSource::File),
        tls,
        replication_factor: 1,
        ..ScyllaConfig::default()
    }
}

/// The environment variables an operator sets to put the store whose configuration section
/// is `section` (`ENRICHER`, `DISPATCH__LEDGER`, `INGEST`) on `cql`: nodes, keyspace,
/// replication, login and TLS (`HERALD__<section>__SCYLLA__…`).
pub fn env_vars(section: &str, cql: &ScyllaConfig) -> Vec<(String, String)> {
    let key = |name: &str| format!("HERALD__{section}__SCYLLA__{name}");
    let nodes: Vec<String> = cql.nodes.iter().map(|n| format!("{n:?}")).collect();
    let mut vars = vec![
        (key("NODES"), format!("[{}]", nodes.join(","))),
        (key("KEYSPACE"), cql.keyspace.clone()),
        (key("REPLICATION_FACTOR"), cql.replication_factor.to_string()),
    ];
    if let Some(user) = &cql.username {
        vars.push((key("USERNAME"), user.clone()));
    }
    match &cql.password {
        Some(SecretSource::File(path)) => vars.push((key("PASSWORD__FILE"), path.clone())),
        Some(SecretSource::Env(name)) => vars.push((key("PASSWORD__ENV"), name.clone())),
        None => {}
    }
    let Some(tls) = &cql.tls else { return vars };
    let files =
        [("CA_FILE", &tls.ca_file), ("CERT_FILE", &tls.cert_file), ("KEY_FILE", &tls.key_file)];
    for (name, path) in files {
        if let Some(path) = path {
            vars.push((key(&format!("TLS__{name}")), path.to_string_lossy().into_owned()));
        }
    }
    if let Some(name) = &tls.server_name {
        vars.push((key("TLS__SERVER_NAME"), name.clone()));
    }
    vars
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
    pub async fn start(dir: &Path) -> Result<Self, crate::EngineError> {
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

    /// A configuration for it and `keyspace`, with the TLS and login settings
    /// `cassandra.sh` wrote to its env file.
    pub fn config(&self, keyspace: &str) -> ScyllaConfig {
        let env = std::fs::read_to_string(self.dir.join("env")).unwrap_or_default();
        let var = |name: &str| {
            env.lines()
                .find_map(|line| line.strip_prefix(name)?.strip_prefix('=').map(str::to_owned))
        };
        from_vars(&self.address, keyspace, var)
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
