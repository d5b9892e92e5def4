//! `herald directory import`: users, devices, preferences and templates from JSON lines or
//! CSV into the enricher's directory. Every record is an upsert keyed like its table, so a
//! re-run of the same file changes nothing; a record that is not valid is reported with its
//! line number and skipped.

mod import;

use std::path::{Path, PathBuf};

use anyhow::Context;
use herald_enricher::ScyllaDirectory;
use herald_enricher::templates::Renderer;
use herald_enricher::{Directory, DirectoryBackend, SqliteDirectory};

use crate::config::HeraldConfig;

pub use import::{ImportReport, import};

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
    },
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

/// Imports into the directory the configuration names (SQLite or ScyllaDB), then announces
/// the templates it wrote to the send API.
pub async fn import_configured(
    config: &HeraldConfig,
    file: &Path,
    options: ImportOptions,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<ImportReport> {
    let enricher = &config.enricher;
    let not_told =
        "the templates are stored, but the send API was not told of them (run the import again)";
    match enricher.directory_backend {
        DirectoryBackend::Sqlite => {
            let directory = std::sync::Arc::new(
                SqliteDirectory::open(&enricher.directory_path)
                    .with_context(|| format!("opening {}", enricher.directory_path.display()))?,
            );
            let report = import(std::sync::Arc::clone(&directory), file, options, progress).await?;
            announce_templates(&config.kafka, &*directory, &report.template_ids)
                .await
                .context(not_told)?;
            Ok(report)
        }
        DirectoryBackend::Scylla => {
            let directory = std::sync::Arc::new(
                ScyllaDirectory::connect(&enricher.scylla).await.context("ScyllaDB directory")?,
            );
            let report = import(std::sync::Arc::clone(&directory), file, options, progress).await?;
            announce_templates(&config.kafka, &*directory, &report.template_ids)
                .await
                .context(not_told)?;
            Ok(report)
        }
    }
}

/// Tells the send API (through the compacted templates topic) that these templates exist,
/// each with the variables every variant of it uses (read from `directory`), so that it
/// refuses an unknown id or a request without one of those variables at once.
pub async fn announce_templates<D: Directory>(
    kafka: &herald_runtime::KafkaConfig,
    directory: &D,
    ids: impl IntoIterator<Item = &String>,
) -> anyhow::Result<()> {
    let mut ids = ids.into_iter().peekable();
    if ids.peek().is_none() {
        return Ok(());
    }
    let renderer = Renderer::default();
    let producer = herald_runtime::kafka::Producer::new(kafka, "herald-directory")?;
    let topic = kafka.topics().templates();
    for id in ids {
        let variants = directory.template(id).await?;
        let variables = renderer.required_variables(&variants);
        let value = serde_json::json!({ "variables": variables }).to_string();
        producer.send(&topic, Some(id.as_bytes()), value.as_bytes(), None).await?;
    }
    Ok(())
}
