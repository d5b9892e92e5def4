//! The send API: authenticates the caller, validates the request, and produces one
//! `NotificationRequest` per recipient to `herald.requests` (keyed by user id), answering
//! 202 with the notification id only after the broker acknowledged every record.

mod api;
pub mod callbacks;
pub mod clients;
pub mod config;
pub mod erasure;
pub mod idempotency;
pub mod openapi;
mod rate;
pub mod request;
mod routes;
mod signatures;
mod state;
pub mod status;
pub mod status_sink;
pub mod store;
pub mod stores;
pub mod templates;
mod tracking;
pub mod webhooks;

pub use api::Ingest;
pub use clients::{ApiClient, ApiClients, Caller, ClientPolicy, DirectoryAccess, RECENT_KEY_TTL};
pub use config::IngestConfig;
pub use idempotency::IdempotencyStore;
pub use status::StatusStore;
pub use store::{StoreBackend, StoreError};
pub use stores::IngestStores;

/// Defines the send API's metrics now rather than at their first use.
pub fn define_metrics() {
    let _ = state::api_metrics();
    tracking::define_metrics();
    callbacks::define_metrics();
    webhooks::define_metrics();
    status_sink::define_metrics();
}
