//! Herald end to end, across roles: one test binary whose modules each check a guarantee
//! through the `herald` binary or its wired roles, on the engines `infra/test.sh` starts.
//! One binary rather than one per file: each test binary links every role (docs/testing.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod apns;
mod broker;
mod broker_faults;
mod caps;
mod cli;
mod clients;
mod cql_outage;
mod dev;
mod directory;
mod dlq;
mod docs;
mod fallback;
mod house;
mod infra;
mod isolation;
mod kafka_acls;
mod kafka_security;
mod kafka_tools;
mod lanes;
mod migrate;
mod pipeline;
mod poison;
mod process;
mod produce;
mod push;
mod python;
mod quiet;
mod region;
mod registry;
mod replay;
mod reset;
mod retry;
mod schedule;
mod schemas;
mod secrets;
mod sendgrid;
mod sms;
mod smtp;
mod support;
mod templates;
mod topics;
mod tracking;
