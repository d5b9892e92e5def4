//! `herald migrate`: the ScyllaDB keyspaces and tables of the stores that live there.

use herald_wiring::config::HeraldConfig;
use herald_wiring::migrate;

#[derive(clap::Args, Debug)]
pub struct MigrateArgs {
    /// Create nothing: list the tables that are missing and exit with status 1 if any is
    /// (what each role's pod waits on before it starts).
    #[arg(long)]
    check: bool,
}

impl MigrateArgs {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        if self.check {
            let missing = migrate::missing(config).await?;
            for table in &missing {
                println!("missing: {table}");
            }
            if !missing.is_empty() {
                anyhow::bail!("{} table(s) missing: run herald migrate", missing.len());
            }
            println!("every store's tables are in place");
            return Ok(());
        }
        let done = migrate::migrate(config).await?;
        if done.is_empty() {
            println!("no store is configured to live in ScyllaDB: nothing to create");
        }
        for line in done {
            println!("created (if missing): {line}");
        }
        Ok(())
    }
}
