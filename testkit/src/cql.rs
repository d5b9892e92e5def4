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
