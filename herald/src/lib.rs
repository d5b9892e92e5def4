//! The `herald` binary's library: configuration, wiring of the roles, and the development
//! environment. The roles themselves live in their own crates.

pub mod bench;
pub mod bench_command;
pub mod bench_enrich;
pub mod chaos;
pub mod config;
pub mod dev;
pub mod directory;
pub mod dlq;
pub mod groups;
pub mod pipeline;
pub mod produce;
pub mod replay;
pub mod roles;
