//! Local stand-ins for third-party provider APIs, for tests and benchmarks. Each speaks its
//! provider's real request and answer shapes, checks what the provider checks (credentials,
//! required fields), and can be told to fail the way the provider does.

pub mod fcm;
