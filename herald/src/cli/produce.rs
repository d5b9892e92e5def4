//! `herald produce`: JSON lines of NotificationRequest to herald.requests as Avro.

use std::path::PathBuf;

use herald_wiring::config::HeraldConfig;

#[derive(clap::Args, Debug)]
pub struct ProduceArgs {
    /// A file with one request per line.
    #[arg(long)]
    file: PathBuf,
}

impl ProduceArgs {
    #[allow(clippy::print_stdout)]
    pub async fn run(self, config: &HeraldConfig) -> anyhow::Result<()> {
        let progress = super::file_progress(&self.file);
        let report = herald_wiring::produce::run(config, &self.file, &progress).await?;
        progress.finish_and_clear();
        for (line, reason) in &report.refused {
            eprintln!("line {line}: {reason}");
        }
        for (line, id) in &report.produced {
            println!("line {line}\t{id}");
        }
        println!("produced {}, skipped {}", report.produced.len(), report.refused.len());
        anyhow::ensure!(report.refused.is_empty(), "{} line(s) skipped", report.refused.len());
        Ok(())
    }
}
