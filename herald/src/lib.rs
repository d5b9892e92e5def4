//! The `herald` command line: one module per subcommand, each an `Args` struct and a `run`.
//! A library so that the tests can parse every command line the docs show with the real
//! parser (`herald/tests/e2e/docs.rs`).

pub mod cli;
