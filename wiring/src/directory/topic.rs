//! `herald directory import` through the directory's one way in: each record becomes a
//! change on `herald.directory.changes` (a template, whole, on `herald.templates`), applied
//! by the running enrichers in each user's order like any API write. The import keeps at
//! most a window of changes ahead of what is applied, so that a bulk load never makes a send
//! wait for more than its own user's changes, then waits until all of it is applied.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use herald_enricher::changes::{put_user_fields, templates};
use herald_enricher::import::Record;
use herald_enricher::templates::Renderer;
use herald_enricher::{Directory, DirectoryWriter, TemplateVariant};
use herald_runtime::kafka::Ack;
use herald_schemas::{DeviceFields, DirectoryChange, DirectoryOp, PreferenceFields};

use super::ImportOptions;
use super::import::{ImportReport, read_file};

/// Changes written and not yet applied, at most.
const WINDOW: i64 = 50_000;
/// Acknowledgements awaited at once.
const IN_FLIGHT: usize = 10_000;
/// How often the store is asked how far it is applied.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// Where the import's writes went: the last offset per (topic, partition).
#[derive(Default)]
struct Written {
    last: HashMap<(String, i32), i64>,
    pending:
        FuturesUnordered<futures::future::BoxFuture<'static, anyhow::Result<(String, i32, i64)>>>,
}

impl Written {
    fn push(&mut self, topic: String, ack: Ack) {
        self.pending.push(Box::pin(async move {
            let (partition, offset) = ack.wait().await?;
            Ok((topic, partition, offset))
        }));
    }

    /// Settles acknowledgements until at most `keep` are awaited.
    async fn settle(&mut self, keep: usize) -> anyhow::Result<()> {
        while self.pending.len() > keep {
            let Some(done) = self.pending.next().await else { break };
            let (topic, partition, offset) = done.context("the broker did not take a change")?;
            let last = self.last.entry((topic, partition)).or_insert(offset);
            *last = (*last).max(offset);
        }
        Ok(())
    }

    /// Changes written and not applied, by the store's account.
    async fn unapplied<D: Directory>(&self, store: &D) -> anyhow::Result<i64> {
        let applied: HashMap<(String, i32), i64> = store
            .progress()
            .await?
            .into_iter()
            .map(|(topic, partition, next)| ((topic, partition), next))
            .collect();
        Ok(self
            .last
            .iter()
            .map(|(key, last)| (last + 1 - applied.get(key).copied().unwrap_or(0)).max(0))
            .sum())
    }
}

/// The change a record of the file makes; templates are gathered, to be written whole.
fn change_of(
    row: Record,
    templates: &mut BTreeMap<String, Vec<TemplateVariant>>,
) -> Option<DirectoryChange> {
    match row {
        Record::User(user) => {
            let mut change = DirectoryChange::new(&user.user_id, DirectoryOp::PutUser);
            change.user = Some(put_user_fields(&user));
            Some(change)
        }
        Record::Device(user_id, device) => {
            let mut change = DirectoryChange::new(&user_id, DirectoryOp::PutDevice);
            change.device = Some(DeviceFields {
                device_id: Some(device.device_id),
                platform: Some(device.platform.as_str().to_owned()),
                token: Some(device.token),
                app_id: device.app_id,
                active: device.active,
            });
            Some(change)
        }
        Record::Preference(user_id, preference) => {
            let mut change = DirectoryChange::new(&user_id, DirectoryOp::SetPreferences);
            change.preferences = vec![PreferenceFields {
                category: preference.category,
                channel: preference.channel,
                opted_in: preference.opted_in,
            }];
            Some(change)
        }
        Record::Template(variant) => {
            let variants = templates.entry(variant.template_id.clone()).or_default();
            variants.retain(|v| v.locale != variant.locale || v.channel != variant.channel);
            variants.push(variant);
            None
        }
    }
}

/// Imports `file` through `writer`, waiting for `store` to show it applied unless `wait` is
/// false.
pub async fn import<D: Directory>(
    store: Arc<D>,
    writer: &DirectoryWriter,
    file: &Path,
    options: ImportOptions,
    progress: &indicatif::ProgressBar,
    wait: bool,
) -> anyhow::Result<ImportReport> {
    let started = Instant::now();
    let mut report = ImportReport::default();
    let mut written = Written::default();
    let mut templates_seen: BTreeMap<String, Vec<TemplateVariant>> = BTreeMap::new();
    let mut counts = [0_usize; 3];
    let mut since_look = 0_usize;
    let changes_topic = writer.topics().directory_changes();
    read_file(file, options, progress, &mut report, async |_line, row| {
        let kind = match &row {
            Record::User(_) => Some(0),
            Record::Device(..) => Some(1),
            Record::Preference(..) => Some(2),
            Record::Template(_) => None,
        };
        let Some(change) = change_of(row, &mut templates_seen) else { return Ok(()) };
        written.push(changes_topic.clone(), writer.change(&change).await?);
        if let Some(kind) = kind {
            counts[kind] += 1;
        }
        written.settle(IN_FLIGHT).await?;
        since_look += 1;
        if since_look >= 1_000 {
            since_look = 0;
            while written.unapplied(&*store).await? > WINDOW {
                tokio::time::sleep(LOOK_EVERY).await;
            }
        }
        Ok(())
    })
    .await?;
    [report.users, report.devices, report.preferences] = counts;
    let renderer = Renderer::default();
    let templates_topic = writer.topics().templates();
    for (id, variants) in templates_seen {
        // The file's variants over what the template has: a line adds or replaces one locale
        // and channel, as it always did.
        let mut whole = store.template(&id).await?;
        whole.retain(|old| {
            !variants.iter().any(|v| v.locale == old.locale && v.channel == old.channel)
        });
        report.templates += variants.len();
        whole.extend(variants);
        let record = templates::record(&whole, &renderer);
        written.push(templates_topic.clone(), writer.template(&id, Some(&record)).await?);
        report.template_ids.insert(id);
    }
    written.settle(0).await?;
    if wait {
        wait_applied(&*store, &written, progress).await?;
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Waits until the store shows every write of the import applied, saying so when nothing
/// moves for a while (no enricher running).
async fn wait_applied<D: Directory>(
    store: &D,
    written: &Written,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<()> {
    let mut last_left = i64::MAX;
    let mut still_since = Instant::now();
    loop {
        let left = written.unapplied(store).await?;
        if left == 0 {
            return Ok(());
        }
        if left < last_left {
            last_left = left;
            still_since = Instant::now();
            progress.set_message(format!("{left} change(s) left to apply"));
        } else if still_since.elapsed() > Duration::from_secs(10) {
            still_since = Instant::now();
            progress.println(format!(
                "waiting for an enricher to apply {left} change(s) (is `herald enrich` running? --no-wait returns now)"
            ));
        }
        tokio::time::sleep(LOOK_EVERY).await;
    }
}
