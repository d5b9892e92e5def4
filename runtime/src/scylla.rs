//! ScyllaDB connection set-up shared by the stores that live there (directory, ledger,
//! status): nodes, credentials from a secret source, and one execution profile with the
//! consistency and timeout every statement of a store runs with.

use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::statement::{Consistency, SerialConsistency};
use serde::{Deserialize, Serialize};

use crate::config::{SecretError, SecretSource};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScyllaConfig {
    /// `host:port` of one or more nodes; the driver discovers the rest.
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub username: Option<String>,
    pub password: Option<SecretSource>,
    pub request_timeout_ms: u64,
    /// Replication of the keyspace when `herald migrate` creates it.
    pub replication_factor: u32,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "herald".into(),
            username: None,
            password: None,
            request_timeout_ms: 5_000,
            replication_factor: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScyllaSetupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot connect to ScyllaDB at {nodes:?}: {reason}")]
    Connect { nodes: Vec<String>, reason: String },
    #[error("keyspace name {0:?} must be letters, digits and underscores")]
    Keyspace(String),
}

impl ScyllaConfig {
    /// A configuration pointing at `HERALD_SCYLLA_URI` (`host:port[,host:port]`), if set:
    /// how the contract tests find a node.
    pub fn from_test_env() -> Option<Self> {
        let uri = std::env::var("HERALD_SCYLLA_URI").ok().filter(|u| !u.is_empty())?;
        Some(Self {
            nodes: uri.split(',').map(str::to_owned).collect(),
            replication_factor: 1,
            ..Self::default()
        })
    }

    /// The keyspace name, checked so it can be spliced into CQL text.
    pub fn keyspace(&self) -> Result<&str, ScyllaSetupError> {
        let ok = !self.keyspace.is_empty()
            && self.keyspace.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        ok.then_some(self.keyspace.as_str())
            .ok_or_else(|| ScyllaSetupError::Keyspace(self.keyspace.clone()))
    }

    /// Connects with quorum reads and writes and LOCAL_SERIAL lightweight transactions.
    pub async fn connect(&self) -> Result<Session, ScyllaSetupError> {
        let profile = ExecutionProfile::builder()
            .consistency(Consistency::LocalQuorum)
            .serial_consistency(Some(SerialConsistency::LocalSerial))
            .request_timeout(Some(Duration::from_millis(self.request_timeout_ms)))
            .build()
            .into_handle();
        let mut builder = SessionBuilder::new()
            .known_nodes(&self.nodes)
            .default_execution_profile_handle(profile);
        if let Some(user) = &self.username {
            let password = self.password.as_ref().map(SecretSource::read).transpose()?;
            builder = builder.user(user.clone(), password.unwrap_or_default());
        }
        builder.build().await.map_err(|e| ScyllaSetupError::Connect {
            nodes: self.nodes.clone(),
            reason: e.to_string(),
        })
    }
}

impl ScyllaConfig {
    /// Connects and creates the keyspace if it is missing, with the configured replication:
    /// what `herald migrate` does before creating a store's tables.
    pub async fn connect_creating_keyspace(&self) -> Result<Session, ScyllaSetupError> {
        let session = self.connect().await?;
        let keyspace = self.keyspace()?;
        let rf = self.replication_factor;
        let cql = format!(
            "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
             {{'class': 'NetworkTopologyStrategy', 'replication_factor': {rf}}}"
        );
        session.query_unpaged(cql, ()).await.map_err(|e| ScyllaSetupError::Connect {
            nodes: self.nodes.clone(),
            reason: format!("creating keyspace {keyspace}: {e}"),
        })?;
        Ok(session)
    }
}

/// A CQL file's statements, comments dropped, with `{keyspace}` filled in.
pub fn statements(cql: &str, keyspace: &str) -> Vec<String> {
    let without_comments: String = cql
        .lines()
        .map(|line| line.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.replace("{keyspace}", keyspace))
        .collect()
}
