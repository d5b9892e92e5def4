//! `herald topics apply`: the cluster's topics brought to their definitions (or, with
//! `--check`, whether they are).

use herald_runtime::kafka::ChangeMode;
use herald_wiring::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct TopicsArgs {
    #[command(subcommand)]
    command: TopicsCommand,
}

#[derive(clap::Subcommand, Debug)]
enum TopicsCommand {
    /// Bring the cluster's topics to their definitions (`[topics]`): create missing ones, add
    /// partitions, set min.insync.replicas and retention. Never removes anything.
    #[command(alias = "create")]
    Apply {
        /// Print what would change; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Change nothing, and exit with status 1 if any topic differs from its definition
        /// (what each role's pod waits on before it starts).
        #[arg(long)]
        check: bool,
    },
}

impl TopicsArgs {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let TopicsCommand::Apply { dry_run, check } = self.command;
        let mode = ChangeMode::from_dry_run(dry_run || check);
        let specs = config.topic_specs();
        let plan = herald_runtime::kafka::apply::apply_topics(&config.kafka, &specs, mode).await?;
        print!("{}", herald_wiring::topics::render_plan(&plan, mode));
        let pending = herald_wiring::topics::pending(&plan);
        if check && !pending.is_empty() {
            anyhow::bail!(
                "{} topic(s) differ from their definitions ({}): run herald topics apply",
                pending.len(),
                pending.join(", ")
            );
        }
        Ok(())
    }
}
