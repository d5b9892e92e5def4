//! `herald replay`: the records of a topic in a time window (or an offset range) produced to
//! it again, for data teams re-driving a period through the pipeline. Replayed records keep
//! their key, payload and headers and gain `herald-replayed-at`, which every role carries on
//! to the records and events that follow. Their notification ids are unchanged, so the
//! delivery ledger keeps a delivery that was already made from being made twice, unless
//! `--force-resend` gives the run a resend id: each delivery is then made once more.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{Producer, header_str, headers_replacing, watermarks};
use herald_schemas::{Lane, headers};
use rdkafka::consumer::Consumer;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::HeraldConfig;
use crate::dlq::reader;

const TIMEOUT: Duration = Duration::from_secs(10);

/// The group id (after `kafka.group_prefix`) of the replay's reader; it joins no group.
pub const READER_GROUP: &str = "replay";

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// Topic name, or a pipeline topic without its prefix (requests, channel.email, ...).
    /// Default: both request lanes (requests and requests.bulk).
    #[arg(long)]
    topic: Option<String>,
    /// Start of a time window: RFC 3339 time, or a duration meaning that long ago (2h).
    #[arg(long, required_unless_present = "from_offset")]
    from: Option<String>,
    /// End of the time window (default: now).
    #[arg(long, requires = "from")]
    to: Option<String>,
    /// Start of an offset range instead (inclusive), in every partition unless --partition.
    #[arg(long, conflicts_with_all = ["from", "to"])]
    from_offset: Option<i64>,
    /// End of the offset range (exclusive; default: the end of the partition).
    #[arg(long, requires = "from_offset")]
    to_offset: Option<i64>,
    #[arg(long, requires = "from_offset")]
    partition: Option<i32>,
    /// Deliver again even what was delivered already (the ledger is bypassed for this run
    /// only: a record redelivered within the run is still sent once).
    #[arg(long)]
    force_resend: bool,
    /// Count what would be replayed; produce nothing.
    #[arg(long)]
    dry_run: bool,
    /// Replay records that are themselves replays too (they carry herald-replayed-at): by
    /// default they are left out, so that replaying a window twice does not double it.
    #[arg(long)]
    include_replays: bool,
}

/// Which records of a topic.
#[derive(Debug, Clone, Copy)]
pub enum Range {
    /// Timestamps in `[from_ms, to_ms)`.
    Time { from_ms: i64, to_ms: i64 },
    /// Offsets in `[from, to)` of one partition or all.
    Offsets { partition: Option<i32>, from: i64, to: Option<i64> },
}

impl ReplayArgs {
    fn range(&self) -> anyhow::Result<Range> {
        if let Some(from) = self.from_offset {
            anyhow::ensure!(from >= 0, "--from-offset must be 0 or more");
            if let Some(to) = self.to_offset {
                anyhow::ensure!(to > from, "--to-offset must be above --from-offset");
            }
            return Ok(Range::Offsets { partition: self.partition, from, to: self.to_offset });
        }
        let from = self.from.as_deref().ok_or_else(|| anyhow::anyhow!("--from is required"))?;
        let from_ms = crate::dlq::parse_time(from)?;
        let to_ms = self.to.as_deref().map(crate::dlq::parse_time).transpose()?;
        let to_ms = to_ms.unwrap_or_else(herald_schemas::now_millis);
        anyhow::ensure!(to_ms > from_ms, "--to must be after --from");
        Ok(Range::Time { from_ms, to_ms })
    }

    fn topics(&self, config: &HeraldConfig) -> Vec<String> {
        let topics = config.kafka.topics();
        match &self.topic {
            None => [Lane::Urgent, Lane::Bulk].into_iter().map(|l| topics.requests_in(l)).collect(),
            Some(t) => vec![crate::groups::resolve_topic(config, t)],
        }
    }
}

/// Runs the replay `args` describes; returns what to print.
pub async fn run(config: &HeraldConfig, args: &ReplayArgs) -> anyhow::Result<String> {
    let range = args.range()?;
    let resend_id = args.force_resend.then(|| uuid::Uuid::now_v7().to_string());
    let mut out = String::new();
    for topic in args.topics(config) {
        let (kafka, window_topic) = (config.kafka.clone(), topic.clone());
        let records =
            tokio::task::spawn_blocking(move || read_range(&kafka, &window_topic, range)).await??;
        let (records, replays): (Vec<_>, Vec<_>) = records
            .into_iter()
            .partition(|r| args.include_replays || header_str(r, headers::REPLAYED_AT).is_none());
        if !replays.is_empty() {
            writeln!(
                out,
                "left out {} record(s) of {topic} that are replays themselves (--include-replays takes them)",
                replays.len()
            )?;
        }
        if args.dry_run {
            writeln!(out, "{} record(s) of {topic} would be replayed", records.len())?;
            continue;
        }
        let progress = indicatif::ProgressBar::new(records.len() as u64);
        let replayed =
            replay(&config.kafka, &topic, &records, resend_id.as_deref(), &progress).await?;
        progress.finish_and_clear();
        writeln!(out, "replayed {replayed} record(s) of {topic}")?;
    }
    if let (Some(id), false) = (&resend_id, args.dry_run) {
        writeln!(out, "forced resend {id}: delivered again even where delivered before")?;
    }
    Ok(out)
}

/// Every record of `topic` in `range`, in offset order per partition.
pub fn read_range(
    kafka: &KafkaConfig,
    topic: &str,
    range: Range,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let consumer = reader(kafka, &kafka.group(READER_GROUP))?;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut partitions: Vec<i32> =
        metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions (does it exist?)");
    if let Range::Offsets { partition: Some(only), .. } = range {
        anyhow::ensure!(partitions.contains(&only), "topic {topic} has no partition {only}");
        partitions = vec![only];
    }
    let starts = match range {
        Range::Time { from_ms, .. } => {
            let mut by_time = TopicPartitionList::new();
            for partition in &partitions {
                by_time.add_partition_offset(topic, *partition, Offset::Offset(from_ms))?;
            }
            // Brokers without time lookups (or none in the window) start at the beginning.
            consumer.offsets_for_times(by_time, TIMEOUT).ok()
        }
        Range::Offsets { .. } => None,
    };
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        let (low, high) = watermarks(&consumer, topic, *partition, TIMEOUT)?;
        let (start, end) = match range {
            Range::Time { .. } => {
                let start = starts
                    .as_ref()
                    .and_then(|s| s.find_partition(topic, *partition))
                    .and_then(|p| match p.offset() {
                        Offset::Offset(offset) if offset >= low => Some(offset),
                        _ => None,
                    })
                    .unwrap_or(low);
                (start, high)
            }
            Range::Offsets { from, to, .. } => (from.max(low), to.unwrap_or(high).min(high)),
        };
        if end > start {
            ends.insert(*partition, end);
            assignment.add_partition_offset(topic, *partition, Offset::Offset(start))?;
        }
    }
    let mut found = Vec::new();
    if ends.is_empty() {
        return Ok(found);
    }
    consumer.assign(&assignment)?;
    let mut quiet_polls = 0;
    while !ends.is_empty() && quiet_polls < 50 {
        let Some(result) = consumer.poll(Duration::from_millis(200)) else {
            quiet_polls += 1;
            continue;
        };
        quiet_polls = 0;
        let message = result?;
        let partition = message.partition();
        let Some(end) = ends.get(&partition).copied() else { continue };
        let at = message.timestamp().to_millis().unwrap_or(0);
        let (wanted, past_window) = match range {
            Range::Time { from_ms, to_ms } => ((from_ms..to_ms).contains(&at), at >= to_ms),
            Range::Offsets { .. } => (message.offset() < end, false),
        };
        if wanted {
            found.push(message.detach());
        }
        if message.offset() + 1 >= end || past_window {
            ends.remove(&partition);
        }
    }
    Ok(found)
}

/// Produces `records` to `topic` again, marked as replayed (and with `resend_id`, to be
/// delivered again); returns how many.
pub async fn replay(
    kafka: &KafkaConfig,
    topic: &str,
    records: &[OwnedMessage],
    resend_id: Option<&str>,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<usize> {
    let producer = Producer::new(kafka, "herald-replay")?;
    let now = herald_schemas::now_millis().to_string();
    let replaced = [headers::REPLAYED_AT, headers::RESEND_ID];
    for record in records {
        let mut set = vec![(headers::REPLAYED_AT, now.as_str())];
        set.extend(resend_id.map(|id| (headers::RESEND_ID, id)));
        let marked = headers_replacing(record, &replaced, &set);
        let payload = record.payload().unwrap_or_default();
        producer.send(topic, record.key(), payload, Some(marked)).await?;
        progress.inc(1);
    }
    Ok(records.len())
}
