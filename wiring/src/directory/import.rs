//! The import's pipeline: the file is read and checked as a stream, and its records are
//! written by a fixed set of writers, each owning the keys (users, templates) that hash to
//! it, so one key's records are written in the file's order while different keys are written
//! at once. SQLite commits the writes queued meanwhile in one transaction; ScyllaDB takes
//! them as concurrent statements. Memory stays flat in the file's size: a bounded queue per
//! writer, counters, and the first refused lines.

use std::collections::BTreeSet;
use std::hash::{Hash, Hasher};
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_enricher::Directory;
use herald_enricher::import::csv::CsvRecords;
use herald_enricher::import::{self as records, Record};
use herald_enricher::templates::Renderer;
use tokio::sync::mpsc;

use super::{ImportFormat, ImportOptions, RecordKind};

/// Writers, and so records written at once.
const WRITERS: usize = 64;
/// Records waiting per writer.
const QUEUED: usize = 64;
/// Refused lines kept with their reasons; beyond them, only counted.
const REASONS_KEPT: usize = 1_000;

#[derive(Debug, Default)]
pub struct ImportReport {
    /// Records read from the file (non-empty JSON lines, CSV rows).
    pub read: usize,
    pub users: usize,
    pub devices: usize,
    pub preferences: usize,
    pub templates: usize,
    /// The template ids written, announced to the send API after the import.
    pub template_ids: BTreeSet<String>,
    /// Records refused, all of them counted.
    pub refused_total: usize,
    /// Line number (from 1) and why, for the first [`REASONS_KEPT`] refused.
    pub refused: Vec<(usize, String)>,
    pub elapsed: Duration,
}

impl ImportReport {
    pub fn imported(&self) -> usize {
        self.users + self.devices + self.preferences + self.templates
    }

    /// What the file held and what became of it.
    pub fn summary(&self) -> String {
        format!(
            "read {} record(s): imported {} ({} user(s), {} device(s), {} preference(s), {} template variant(s)), refused {}",
            self.read,
            self.imported(),
            self.users,
            self.devices,
            self.preferences,
            self.templates,
            self.refused_total
        )
    }

    /// How long it took, and the rate.
    pub fn timing(&self) -> String {
        let seconds = self.elapsed.as_secs_f64().max(1e-3);
        format!("in {seconds:.1} s: {:.0} records/s", self.read as f64 / seconds)
    }

    pub(super) fn refuse(&mut self, line: usize, reason: String) {
        self.refused_total += 1;
        if self.refused.len() < REASONS_KEPT {
            self.refused.push((line, reason));
        }
    }
}

/// What the writers did, counted as they go.
#[derive(Default)]
struct Written {
    users: AtomicUsize,
    devices: AtomicUsize,
    preferences: AtomicUsize,
    templates: AtomicUsize,
    template_ids: Mutex<BTreeSet<String>>,
    /// The first write that failed: the import stops there.
    failed: Mutex<Option<anyhow::Error>>,
}

impl Written {
    fn failed(&self) -> bool {
        self.failed.lock().map_or(true, |f| f.is_some())
    }
}

async fn write<D: Directory>(directory: &D, row: Record, written: &Written) -> anyhow::Result<()> {
    let counter = match row {
        Record::User(user) => directory.upsert_user(user).await.map(|()| &written.users),
        Record::Device(user_id, device) => {
            directory.upsert_device(&user_id, device).await.map(|()| &written.devices)
        }
        Record::Preference(user_id, preference) => {
            directory.set_preference(&user_id, preference).await.map(|()| &written.preferences)
        }
        Record::Template(variant) => {
            // A template is written whole: its variants so far, this one replacing its
            // locale and channel's. One writer owns a template id, so no other races it.
            let id = variant.template_id.clone();
            if let Ok(mut ids) = written.template_ids.lock() {
                ids.insert(id.clone());
            }
            let mut variants = directory.template(&id).await?;
            variants.retain(|v| v.locale != variant.locale || v.channel != variant.channel);
            variants.push(variant);
            directory.put_template(&id, variants).await.map(|()| &written.templates)
        }
    };
    counter?.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// The writers, fed by key.
struct Writers {
    queues: Vec<mpsc::Sender<(usize, Record)>>,
    tasks: tokio::task::JoinSet<()>,
    written: Arc<Written>,
}

impl Writers {
    fn start<D: Directory>(directory: &Arc<D>) -> Self {
        let written = Arc::new(Written::default());
        let mut tasks = tokio::task::JoinSet::new();
        let queues = (0..WRITERS)
            .map(|_| {
                let (tx, mut rx) = mpsc::channel::<(usize, Record)>(QUEUED);
                let (directory, written) = (Arc::clone(directory), Arc::clone(&written));
                tasks.spawn(async move {
                    while let Some((line, row)) = rx.recv().await {
                        if let Err(e) = write(&*directory, row, &written).await {
                            if let Ok(mut failed) = written.failed.lock() {
                                failed.get_or_insert(e.context(format!("writing line {line}")));
                            }
                            return;
                        }
                    }
                });
                tx
            })
            .collect();
        Self { queues, tasks, written }
    }

    /// Queues `row` behind the earlier records of its key; waits while that writer is busy.
    async fn send(&self, line: usize, row: Record) -> anyhow::Result<()> {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        row.key().hash(&mut hasher);
        let writer = usize::try_from(hasher.finish() % WRITERS as u64).unwrap_or(0);
        if self.queues[writer].send((line, row)).await.is_err() || self.written.failed() {
            return Err(self.take_failure());
        }
        Ok(())
    }

    fn take_failure(&self) -> anyhow::Error {
        self.written
            .failed
            .lock()
            .ok()
            .and_then(|mut f| f.take())
            .unwrap_or_else(|| anyhow::anyhow!("a directory writer stopped"))
    }

    /// Waits for every queued record; the counts, or the first write that failed.
    async fn finish(mut self, report: &mut ImportReport) -> anyhow::Result<()> {
        self.queues.clear();
        while let Some(joined) = self.tasks.join_next().await {
            joined.context("a directory writer panicked")?;
        }
        if self.written.failed() {
            return Err(self.take_failure());
        }
        let w = &self.written;
        report.users = w.users.load(Ordering::Relaxed);
        report.devices = w.devices.load(Ordering::Relaxed);
        report.preferences = w.preferences.load(Ordering::Relaxed);
        report.templates = w.templates.load(Ordering::Relaxed);
        report.template_ids = w.template_ids.lock().map(|ids| ids.clone()).unwrap_or_default();
        Ok(())
    }
}

/// Reads `file` (JSON lines or CSV) and checks every record: each valid one goes to `each`
/// with its line number, each refused one into `report`.
pub(super) async fn read_file(
    file: &Path,
    options: ImportOptions,
    progress: &indicatif::ProgressBar,
    report: &mut ImportReport,
    mut each: impl AsyncFnMut(usize, Record) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let opened =
        std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let reader = std::io::BufReader::new(opened);
    let renderer = Renderer::default();
    match options.format {
        ImportFormat::Jsonl => {
            for (index, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("reading line {}", index + 1))?;
                progress.inc(line.len() as u64 + 1);
                if line.trim().is_empty() {
                    continue;
                }
                report.read += 1;
                match records::parse_json_line(&line, &renderer) {
                    Ok(row) => each(index + 1, row).await?,
                    Err(reason) => report.refuse(index + 1, reason),
                }
            }
        }
        ImportFormat::Csv => {
            let mut records = CsvRecords::new(reader, options.kind.map(RecordKind::as_str))?;
            while let Some(record) = records.next_record()? {
                progress.set_position(record.end_byte);
                report.read += 1;
                let row = record.fields.and_then(|fields| records::from_fields(fields, &renderer));
                match row {
                    Ok(row) => each(record.line, row).await?,
                    Err(reason) => report.refuse(record.line, reason),
                }
            }
        }
    }
    Ok(())
}

/// Writes `file`'s valid records straight into `directory`, beside the directory's one way
/// in: for a first load into a directory no enricher reads yet (`--direct`). A refused record
/// costs only itself.
pub async fn import_direct<D: Directory>(
    directory: Arc<D>,
    file: &Path,
    options: ImportOptions,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let mut report = ImportReport::default();
    let writers = Writers::start(&directory);
    read_file(file, options, progress, &mut report, async |line, row| {
        writers.send(line, row).await
    })
    .await?;
    writers.finish(&mut report).await?;
    report.elapsed = started.elapsed();
    Ok(report)
}
