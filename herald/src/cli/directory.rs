//! `herald directory import`: users, devices, preferences and templates from a file.

use herald_wiring::config::HeraldConfig;
use herald_wiring::directory::{DirectoryCommand, ImportOptions, ImportPath, import_configured};

#[derive(clap::Args, Debug)]
pub struct DirectoryArgs {
    #[command(subcommand)]
    command: DirectoryCommand,
}

impl DirectoryArgs {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let DirectoryCommand::Import { file, format, kind, no_wait, direct } = self.command;
        let options = ImportOptions::for_file(&file, format, kind)?;
        let path = if direct { ImportPath::Direct } else { ImportPath::Topic { wait: !no_wait } };
        let progress = super::file_progress(&file);
        let report = import_configured(config, &file, (options, path), &progress).await?;
        progress.finish_and_clear();
        for (line, reason) in &report.refused {
            eprintln!("line {line}: {reason}");
        }
        if report.refused_total > report.refused.len() {
            eprintln!("... and {} more", report.refused_total - report.refused.len());
        }
        println!("{}\n{}", report.summary(), report.timing());
        anyhow::ensure!(
            report.refused_total == 0,
            "{} of {} record(s) refused",
            report.refused_total,
            report.read
        );
        Ok(())
    }
}
