//! `herald directory import`: users, devices, preferences and templates from JSON lines or
//! CSV into the enricher's directory. Every record is an upsert keyed like its table, so a
//! re-run of the same file changes nothing; a record that is not valid is reported with its
//! line number and skipped.

mod csv_file;
mod import;

use std::path::{Path, PathBuf};

use anyhow::Context;
use herald_enricher::quiet::{self, QuietHours};
use herald_enricher::scylla_directory::ScyllaDirectory;
use herald_enricher::templates::Renderer;
use herald_enricher::{
    Device, Directory, DirectoryBackend, Platform, Preference, SqliteDirectory, TemplateVariant,
    User,
};
use herald_schemas::targets;

use crate::config::HeraldConfig;
use serde::Deserialize;

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

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Line {
    User {
        user_id: String,
        #[serde(default)]
        email: Option<String>,
        #[serde(default)]
        phone: Option<String>,
        #[serde(default)]
        locale: Option<String>,
        #[serde(default)]
        timezone: Option<String>,
        #[serde(default)]
        region: Option<String>,
        /// `HH:MM-HH:MM` in `timezone`.
        #[serde(default)]
        quiet_hours: Option<String>,
    },
    Device {
        user_id: String,
        device_id: String,
        platform: String,
        token: String,
        #[serde(default)]
        app_id: Option<String>,
        #[serde(default = "active_by_default")]
        active: bool,
    },
    Preference {
        user_id: String,
        category: String,
        channel: String,
        opted_in: bool,
    },
    Template {
        template_id: String,
        /// Empty or absent: the template's default, used when no translation matches.
        #[serde(default)]
        locale: String,
        channel: String,
        #[serde(default)]
        subject: Option<String>,
        #[serde(default)]
        title: Option<String>,
        body: String,
        #[serde(default)]
        html: Option<String>,
    },
}

fn active_by_default() -> bool {
    true
}

pub use import::{ImportReport, import};

/// What one line asks the directory to hold.
enum Row {
    User(User),
    Device(String, Device),
    Preference(String, Preference),
    Template(TemplateVariant),
}

fn parse_line(line: &str, renderer: &Renderer) -> Result<Row, String> {
    let line: Line = serde_json::from_str(line).map_err(|e| e.to_string())?;
    check(line, renderer)
}

/// A record as the directory will hold it, once its addresses, tokens, zone and template
/// are valid.
fn check(line: Line, renderer: &Renderer) -> Result<Row, String> {
    match line {
        Line::User { user_id, email, phone, locale, timezone, region, quiet_hours } => {
            if user_id.is_empty() {
                return Err("user_id must not be empty".into());
            }
            if let Some(email) = &email
                && let Some(reason) = targets::email_error(email)
            {
                return Err(format!("email {email:?}: {reason}"));
            }
            if let Some(phone) = &phone
                && let Some(reason) = targets::phone_number_error(phone)
            {
                return Err(format!("phone {phone:?}: {reason}"));
            }
            if let Some(zone) = timezone.as_deref().filter(|z| !quiet::is_known_timezone(z)) {
                return Err(format!(
                    "timezone {zone:?} is not an IANA time zone (e.g. Asia/Seoul)"
                ));
            }
            if let Some(window) = &quiet_hours {
                QuietHours::parse(window)?;
            }
            Ok(Row::User(User { user_id, email, phone, locale, timezone, region, quiet_hours }))
        }
        Line::Device { user_id, device_id, platform, token, app_id, active } => {
            if let Some(reason) = targets::device_token_error(&platform, &token) {
                return Err(reason);
            }
            let platform: Platform = platform.parse()?;
            Ok(Row::Device(user_id, Device { device_id, platform, token, app_id, active }))
        }
        Line::Preference { user_id, category, channel, opted_in } => {
            if !["email", "sms", "push"].contains(&channel.as_str()) {
                return Err(format!("unknown channel {channel:?}: use email, sms or push"));
            }
            Ok(Row::Preference(user_id, Preference { category, channel, opted_in }))
        }
        Line::Template { template_id, locale, channel, subject, title, body, html } => {
            let variant =
                TemplateVariant { template_id, locale, channel, subject, title, body, html };
            renderer.check(&variant).map_err(|e| e.to_string())?;
            Ok(Row::Template(variant))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(line: &str) -> String {
        match parse_line(line, &Renderer::default()) {
            Ok(_) => panic!("accepted {line}"),
            Err(reason) => reason,
        }
    }

    #[test]
    fn each_kind_is_checked_before_it_is_written() {
        let renderer = Renderer::default();
        for ok in [
            r#"{"kind":"user","user_id":"1","email":"a@example.com","phone":"+14155550100"}"#,
            r#"{"kind":"device","user_id":"1","device_id":"p","platform":"android","token":"fcm-token-1"}"#,
            r#"{"kind":"preference","user_id":"1","category":"marketing","channel":"sms","opted_in":false}"#,
            r#"{"kind":"template","template_id":"otp","channel":"sms","body":"{{ code }}"}"#,
        ] {
            assert!(parse_line(ok, &renderer).is_ok(), "{ok}");
        }
        assert!(refused(r#"{"kind":"user","user_id":"1","phone":"555"}"#).contains("E.164"));
        assert!(
            refused(r#"{"kind":"user","user_id":"1","timezone":"Mars/Base"}"#).contains("IANA")
        );
        assert!(
            refused(r#"{"kind":"user","user_id":"1","quiet_hours":"22-07"}"#).contains("HH:MM")
        );
        assert!(refused(r#"{"kind":"user","user_id":"1","email":"nope"}"#).contains("email"));
        assert!(
            refused(
                r#"{"kind":"device","user_id":"1","device_id":"p","platform":"ios","token":"xyz"}"#
            )
            .contains("hex")
        );
        assert!(
            refused(r#"{"kind":"template","template_id":"t","channel":"sms","body":"{{ x"}"#)
                .contains("syntax")
        );
        assert!(refused(r#"{"kind":"group","id":"1"}"#).contains("unknown variant"));
        assert!(refused(r#"{"kind":"user","user_id":"1","nick":"x"}"#).contains("unknown field"));
    }
}
