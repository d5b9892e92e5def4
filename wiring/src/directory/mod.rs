//! `herald directory import`: users, devices, preferences and templates from JSON lines or
//! CSV into the enricher's directory. Every record is an upsert keyed like its table, so a
//! re-run of the same file changes nothing; a record that is not valid is reported with its
//! line number and skipped.

mod import;
mod topic;

use std::path::{Path, PathBuf};

use anyhow::Context;
use herald_enricher::directory::AnyDirectory;
use herald_enricher::templates::Renderer;
use herald_enricher::{Directory, DirectoryWriter};

use crate::config::HeraldConfig;

pub use import::{ImportReport, import_direct};
pub use topic::import;

#[derive(clap::Subcommand, Debug)]
pub enum DirectoryCommand {
    /// Load users, devices, preferences and templates from JSON lines or CSV.
    ///
    /// JSON lines: one record each, tagged by "kind": user, device, preference, template.
    ///
    /// {"kind":"user","user_id":"1","email":"a@example.com","phone":"+14155550100","locale":"en-US","timezone":"America/New_York","region":"US"}
    /// {"kind":"device","user_id":"1","device_id":"phone","platform":"ios","token":"<64 hex>","app_id":"com.example.app"}
    /// {"kind":"preference","user_id":"1","category":"marketing","channel":"email","opted_in":false}
    /// {"kind":"template","template_id":"otp","locale":"ko","channel":"sms","body":"인증 코드 {{ code }}"}
    ///
    /// Or CSV with a header row of the same field names (an empty cell is an absent field),
    /// the kind in a `kind` column or given with --kind for the whole file:
    ///
    /// user_id,email,phone,locale,timezone,region
    /// 1,a@example.com,+14155550100,en-US,America/New_York,US
    #[command(verbatim_doc_comment)]
    Import {
        /// The file to load.
        #[arg(long)]
        file: PathBuf,
        /// The file's format; by default CSV for a name ending in .csv, JSON lines otherwise.
        #[arg(long, value_enum)]
        format: Option<ImportFormat>,
        /// What the rows of a CSV file without a `kind` column are.
        #[arg(long, value_enum)]
        kind: Option<RecordKind>,
        /// Return once every change is written, without waiting for the enrichers to apply
        /// them.
        #[arg(long, conflicts_with = "direct")]
        no_wait: bool,
        /// Write the store itself instead of herald.directory.changes: a first bulk load into
        /// a directory no enricher is running on yet (running ones would see it only as their
        /// caches expire).
        #[arg(long)]
        direct: bool,
    },
}

/// How `herald directory import` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportPath {
    /// Through herald.directory.changes and herald.templates, applied by the enrichers;
    /// waiting for them or not.
    Topic { wait: bool },
    /// Into the store, beside the enrichers (`--direct`).
    Direct,
}

/// What `herald directory import` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImportFormat {
    /// One JSON object per line.
    Jsonl,
    /// A header row, then one record per row.
    Csv,
}

impl ImportFormat {
    /// CSV for a file whose name ends in `.csv`, JSON lines otherwise.
    pub fn of(file: &Path) -> Self {
        let csv = file.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if csv { Self::Csv } else { Self::Jsonl }
    }
}

/// The kinds of directory record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RecordKind {
    User,
    Device,
    Preference,
    Template,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Device => "device",
            Self::Preference => "preference",
            Self::Template => "template",
        }
    }
}

/// How to read the file given to `herald directory import`.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    pub format: ImportFormat,
    /// For CSV without a `kind` column.
    pub kind: Option<RecordKind>,
}

impl ImportOptions {
    /// The options for `file`, its format from its name unless `format` is given.
    pub fn for_file(
        file: &Path,
        format: Option<ImportFormat>,
        kind: Option<RecordKind>,
    ) -> anyhow::Result<Self> {
        let format = format.unwrap_or_else(|| ImportFormat::of(file));
        anyhow::ensure!(
            kind.is_none() || format == ImportFormat::Csv,
            "--kind is for CSV files; a JSON line names its own kind"
        );
        Ok(Self { format, kind })
    }
}

/// Imports into the directory the configuration names (SQLite or ScyllaDB): through its
/// topics, or (`--direct`) into the store, then announcing the templates written.
pub async fn import_configured(
    config: &HeraldConfig,
    file: &Path,
    (options, path): (ImportOptions, ImportPath),
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<ImportReport> {
    let directory = AnyDirectory::open(&config.enricher).await.context("the directory")?;
    import_into(config, std::sync::Arc::new(directory), file, (options, path), progress).await
}

async fn import_into<D: Directory>(
    config: &HeraldConfig,
    directory: std::sync::Arc<D>,
    file: &Path,
    (options, path): (ImportOptions, ImportPath),
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<ImportReport> {
    let writer = writer(config).await?;
    match path {
        ImportPath::Topic { wait } => {
            let report = import(directory, &writer, file, options, progress, wait).await;
            writer.flush(std::time::Duration::from_secs(10)).await;
            report
        }
        ImportPath::Direct => {
            let report =
                import_direct(std::sync::Arc::clone(&directory), file, options, progress).await?;
            let not_told = "the templates are stored, but the send API was not told of them (run the import again)";
            announce_templates(&writer, &*directory, &report.template_ids)
                .await
                .context(not_told)?;
            Ok(report)
        }
    }
}

/// A writer of the directory's topics, with the configured registry.
pub async fn writer(config: &HeraldConfig) -> anyhow::Result<DirectoryWriter> {
    let output = crate::roles::output(config, "herald-directory")?;
    Ok(DirectoryWriter::new(
        &config.kafka,
        output.codec_handle(),
        output.producer().clone(),
        "herald-directory",
    )?)
}

/// Writes these templates whole (as `directory` holds them) to `herald.templates`: the send
/// API learns their ids and variables from it, and the enrichers apply them again, changing
/// nothing.
pub async fn announce_templates<D: Directory>(
    writer: &DirectoryWriter,
    directory: &D,
    ids: impl IntoIterator<Item = &String>,
) -> anyhow::Result<()> {
    let renderer = Renderer::default();
    let mut acks = Vec::new();
    for id in ids {
        let variants = directory.template(id).await?;
        let record = herald_enricher::changes::templates::record(&variants, &renderer);
        acks.push(writer.template(id, Some(&record)).await?);
    }
    herald_runtime::kafka::wait_all(acks).await?;
    Ok(())
}
