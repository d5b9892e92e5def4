//! The send API on its own, against the run's broker, registry and stores: what it accepts
//! is produced (once, even when retried), what it refuses produces nothing and says why,
//! and every answer is one its OpenAPI document allows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bulk;
mod idempotency;
mod openapi;
mod refusals;
mod scopes;
mod support;
