//! `herald schemas register`: Herald's schemas under the subject of every topic it writes,
//! the one writer when the roles only look them up (`schema_registry.auto_register = false`).

use anyhow::Context;
use herald_schemas::{AvroCodec, EncodeError};
use herald_wiring::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct SchemasArgs {
    #[command(subcommand)]
    command: SchemasCommand,
}

#[derive(clap::Subcommand, Debug)]
enum SchemasCommand {
    /// Register Herald's schema under `<topic>-value` for every topic it writes (a subject
    /// that has it keeps its id), whatever `schema_registry.auto_register` says.
    Register {
        /// Register nothing: list the subjects that lack Herald's schema and exit with
        /// status 1 if any does (what each role's pod waits on before it starts).
        #[arg(long)]
        check: bool,
    },
}

impl SchemasArgs {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let SchemasCommand::Register { check } = self.command;
        let mut registry = config.schema_registry.resolve().context("schema registry settings")?;
        registry.auto_register = !check;
        let codec = AvroCodec::new(&registry).context("schema registry client")?;
        let url = &config.schema_registry.url;
        let mut missing = 0;
        for (topic, record) in config.kafka.topics().written_records() {
            let subject = format!("{topic}-value");
            match codec.register_kind(&topic, record).await {
                Ok(id) if check => println!("{subject}: {} (id {id})", record.name()),
                Ok(id) => println!("registered {subject}: {} (id {id})", record.name()),
                Err(EncodeError::Unregistered { .. }) => {
                    missing += 1;
                    println!("missing: {subject}: {}", record.name());
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("the schema registry at {url}"));
                }
            }
        }
        if missing > 0 {
            anyhow::bail!("{missing} subject(s) lack Herald's schema: run herald schemas register");
        }
        Ok(())
    }
}
