//! The `herald` binary's library: configuration, wiring of the roles, and the development
//! environment. The roles themselves live in their own crates.

#[cfg(feature = "dev")]
pub mod bench;
#[cfg(feature = "dev")]
pub mod chaos;
pub mod config;
#[cfg(feature = "dev")]
pub mod dev;
pub mod directory;
pub mod dlq;
pub mod groups;
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
