//! `herald migrate`: the ScyllaDB keyspaces and tables of the stores that live there.

use herald_wiring::config::HeraldConfig;
use herald_wiring::roles;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {}

impl MigrateArgs {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let done = roles::migrate(config).await?;
        if done.is_empty() {
            println!("no store is configured to live in ScyllaDB: nothing to create");
        }
        for line in done {
            println!("created (if missing): {line}");
        }
        Ok(())
    }
}
