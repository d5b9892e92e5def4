//! ScyllaDB connection set-up shared by the stores that live there (directory, ledger,
//! status): nodes, credentials from a secret source, TLS, and one execution profile with the
//! consistency and timeout every statement of a store runs with.

mod tls;

pub use tls::{CqlTls, CqlTlsError};

use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};
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
    /// Present, every connection is TLS (`[…scylla.tls]`).
    pub tls: Option<CqlTls>,
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
            tls: None,
            request_timeout_ms: 5_000,
            replication_factor: 3,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ScyllaSetupError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Tls(#[from] CqlTlsError),
    #[error("scylla.username {0:?} is set without scylla.password")]
    NoPassword(String),
    #[error("cannot connect to ScyllaDB at {nodes:?}{tls}: {reason}")]
    Connect { nodes: Vec<String>, tls: &'static str, reason: String },
    #[error("keyspace name {0:?} must be letters, digits and underscores")]
    Keyspace(String),
}

impl ScyllaConfig {
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
            let password =
                self.password.as_ref().ok_or_else(|| ScyllaSetupError::NoPassword(user.clone()))?;
            builder = builder.user(user.clone(), password.read()?);
        }
        if let Some(tls) = &self.tls {
            builder = builder.tls_context(Some(tls.client_config()?));
        }
        builder.build().await.map_err(|e| self.connect_error(e.to_string()))
    }

    /// A connection-time failure (a statement run while opening a store, say) for this cluster.
    pub fn connect_error(&self, reason: String) -> ScyllaSetupError {
        let tls = if self.tls.is_some() { " over TLS" } else { "" };
        ScyllaSetupError::Connect { nodes: self.nodes.clone(), tls, reason }
    }
}

impl ScyllaConfig {
    /// Connects and creates the keyspace if it is missing, with the configured replication:
    /// what `herald migrate` does before creating a store's tables.
    pub async fn connect_creating_keyspace(&self) -> Result<Session, ScyllaSetupError> {
        let session = self.connect().await?;
        let keyspace = self.keyspace()?;
        let cql = create_keyspace(keyspace, self.replication_factor, engine(&session).await);
        session
            .query_unpaged(cql, ())
            .await
            .map_err(|e| self.connect_error(format!("creating keyspace {keyspace}: {e}")))?;
        Ok(session)
    }
}

/// The CQL engines Herald's stores run on; their keyspaces differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CqlEngine {
    ScyllaDb,
    Cassandra,
}

/// The engine `session` talks to: ScyllaDB has `system.scylla_local`. A failed lookup counts
/// as Cassandra: the plain statements suit both.
pub async fn engine(session: &Session) -> CqlEngine {
    if has_scylla_local(session).await { CqlEngine::ScyllaDb } else { CqlEngine::Cassandra }
}

async fn has_scylla_local(session: &Session) -> bool {
    let cql = "SELECT table_name FROM system_schema.tables \
               WHERE keyspace_name = 'system' AND table_name = 'scylla_local'";
    let Ok(result) = session.query_unpaged(cql, ()).await else { return false };
    result.into_rows_result().is_ok_and(|rows| rows.rows_num() > 0)
}

/// The keyspace Herald's stores live in. On ScyllaDB without tablets: ScyllaDB does not
/// run lightweight transactions (the ledger's claims, idempotency keys) in a tablets
/// keyspace, and makes new keyspaces tablets ones by default; Cassandra refuses the option.
pub fn create_keyspace(keyspace: &str, replication_factor: u32, engine: CqlEngine) -> String {
    let tablets =
        if engine == CqlEngine::ScyllaDb { " AND tablets = {'enabled': false}" } else { "" };
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', 'replication_factor': {replication_factor}}}{tablets}"
    )
}

/// Runs every statement of a CQL file (`CREATE ... IF NOT EXISTS`) in `keyspace`: what
/// `herald migrate` does for each store.
pub async fn apply_cql(session: &Session, cql: &str, keyspace: &str) -> Result<(), String> {
    for statement in statements(cql, keyspace) {
        session.query_unpaged(statement, ()).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The tables a CQL file creates that `keyspace` lacks, as `keyspace.table`: what `herald
/// migrate --check` reports. A missing keyspace lacks them all.
pub async fn missing_tables(
    session: &Session,
    cql: &str,
    keyspace: &str,
) -> Result<Vec<String>, String> {
    let wanted = created_tables(cql);
    let query = "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?";
    let result = session.query_unpaged(query, (keyspace,)).await.map_err(|e| e.to_string())?;
    let rows = result.into_rows_result().map_err(|e| e.to_string())?;
    let mut present = std::collections::BTreeSet::new();
    for row in rows.rows::<(String,)>().map_err(|e| e.to_string())? {
        present.insert(row.map_err(|e| e.to_string())?.0);
    }
    Ok(wanted
        .into_iter()
        .filter(|table| !present.contains(table))
        .map(|table| format!("{keyspace}.{table}"))
        .collect())
}

/// The names of the tables a CQL file's `CREATE TABLE IF NOT EXISTS {keyspace}.name`
/// statements create.
fn created_tables(cql: &str) -> Vec<String> {
    statements(cql, "")
        .iter()
        .filter_map(|statement| {
            let rest = statement.strip_prefix("CREATE TABLE IF NOT EXISTS .")?;
            let name = rest.split(|c: char| c.is_whitespace() || c == '(').next()?;
            Some(name.to_owned())
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error("query failed: {0}")]
    Execute(String),
    #[error("unreadable rows: {0}")]
    Rows(String),
}

/// Runs a prepared `SELECT` (one page) and reads its rows as `R`.
pub async fn select<R>(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> Result<Vec<R>, SelectError>
where
    R: for<'frame, 'metadata> scylla::deserialize::row::DeserializeRow<'frame, 'metadata>,
{
    let unreadable = |e: &dyn std::fmt::Display| SelectError::Rows(e.to_string());
    let result = session
        .execute_unpaged(statement, values)
        .await
        .map_err(|e| SelectError::Execute(e.to_string()))?;
    let rows = result.into_rows_result().map_err(|e| unreadable(&e))?;
    rows.rows::<R>()
        .map_err(|e| unreadable(&e))?
        .collect::<Result<Vec<R>, _>>()
        .map_err(|e| unreadable(&e))
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

/// What a lightweight transaction answered: whether it applied and, when it did not, the
/// row as it stands (the columns the answer carries, by name).
#[derive(Debug)]
pub struct LwtAnswer {
    pub applied: bool,
    columns: Vec<(String, Option<CqlValue>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum LwtError {
    #[error("lightweight transaction failed: {0}")]
    Execute(String),
    #[error("lightweight transaction gave an unreadable answer: {0}")]
    Unreadable(String),
}

/// Runs a lightweight transaction (a statement with `IF ...`) and reads its answer.
pub async fn execute_lwt(
    session: &Session,
    statement: &PreparedStatement,
    values: impl SerializeRow,
) -> Result<LwtAnswer, LwtError> {
    let result = session
        .execute_unpaged(statement, values)
        .await
        .map_err(|e| LwtError::Execute(e.to_string()))?;
    let rows = result.into_rows_result().map_err(|e| LwtError::Unreadable(e.to_string()))?;
    let names: Vec<String> = rows.column_specs().iter().map(|s| s.name().to_owned()).collect();
    let row: Row = rows
        .maybe_first_row::<Row>()
        .map_err(|e| LwtError::Unreadable(e.to_string()))?
        .ok_or_else(|| LwtError::Unreadable("no row".into()))?;
    let columns: Vec<(String, Option<CqlValue>)> = names.into_iter().zip(row.columns).collect();
    let applied = match columns.iter().find(|(name, _)| name == "[applied]") {
        Some((_, value)) => matches!(value, Some(CqlValue::Boolean(true))),
        None => return Err(LwtError::Unreadable("no [applied] column".into())),
    };
    Ok(LwtAnswer { applied, columns })
}

impl LwtAnswer {
    fn value(&self, name: &str) -> Option<&CqlValue> {
        self.columns.iter().find(|(n, _)| n == name).and_then(|(_, v)| v.as_ref())
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        match self.value(name)? {
            CqlValue::Text(s) | CqlValue::Ascii(s) => Some(s),
            _ => None,
        }
    }

    pub fn bigint(&self, name: &str) -> Option<i64> {
        match self.value(name)? {
            CqlValue::BigInt(v) => Some(*v),
            _ => None,
        }
    }

    pub fn int(&self, name: &str) -> Option<i32> {
        match self.value(name)? {
            CqlValue::Int(v) => Some(*v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyspace_is_made_without_tablets_on_scylladb_only() {
        let scylla = create_keyspace("herald", 3, CqlEngine::ScyllaDb);
        assert!(scylla.ends_with("AND tablets = {'enabled': false}"), "{scylla}");
        let cassandra = create_keyspace("herald", 3, CqlEngine::Cassandra);
        assert!(!cassandra.contains("tablets"), "{cassandra}");
        assert!(cassandra.contains("'replication_factor': 3}"), "{cassandra}");
    }

    #[test]
    fn the_tables_a_cql_file_creates_are_named_without_comments_or_columns() {
        let cql = "-- a comment; with a semicolon\n\
                   CREATE TABLE IF NOT EXISTS {keyspace}.users (id text PRIMARY KEY);\n\
                   CREATE TABLE IF NOT EXISTS {keyspace}.devices(id text PRIMARY KEY);";
        assert_eq!(created_tables(cql), ["users", "devices"]);
    }
}
