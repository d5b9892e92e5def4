//! What the `herald` binary is made of besides its command line: the configuration, the
//! wiring of the roles into processes, and the work of the operator commands. The roles live
//! in their own crates; the development tools in `herald-devtools`, which builds on this.

pub mod acls;
pub mod config;
pub mod directory;
pub mod dlq;
pub mod groups;
pub mod migrate;
pub mod pipeline;
pub mod produce;
pub mod replay;
pub mod roles;
pub mod topics;

/// Every metric family Herald's roles export, with its kind: what dashboards and alert rules
/// may refer to. Metrics are defined lazily, so this defines them all first.
pub fn metrics_catalog() -> Vec<(String, herald_runtime::metrics::MetricKind)> {
    herald_runtime::metrics::define_runtime_metrics();
    herald_ingest::define_metrics();
    herald_enricher::define_metrics();
    herald_dispatchers::define_metrics();
    herald_runtime::metrics::registered()
}
