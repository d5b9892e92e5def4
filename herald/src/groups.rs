//! `herald groups lag`: where a consumer group stands on each partition of the pipeline's
//! topics: committed offset, log end, lag.

use std::time::Duration;

use herald_runtime::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// One partition's position for a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// Next offset the group will read; `None` if it never committed.
    pub committed: Option<i64>,
    pub low: i64,
    pub high: i64,
}

impl PartitionLag {
    /// Records the group has yet to read.
    pub fn lag(&self) -> i64 {
        (self.high - self.committed.unwrap_or(self.low).max(self.low)).max(0)
    }
}

/// A client speaking for `group` without joining it.
fn group_consumer(kafka: &KafkaConfig, group: &str) -> anyhow::Result<BaseConsumer> {
    let mut config = ClientConfig::new();
    for (key, value) in kafka.client_properties()? {
        config.set(key, value);
    }
    config.set("group.id", group).set("enable.auto.commit", "false");
    Ok(config.create()?)
}

/// A client for watermarks and metadata, in no group.
pub fn probe(kafka: &KafkaConfig) -> anyhow::Result<BaseConsumer> {
    group_consumer(kafka, "herald-probe")
}

/// Committed offsets and watermarks of `group` on `topics`, without joining the group.
/// With `explicit`, every partition of `topics` is reported; otherwise only those the group
/// has committed offsets for.
pub fn lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    explicit: bool,
) -> anyhow::Result<Vec<PartitionLag>> {
    let consumer = group_consumer(kafka, group)?;
    let timeout = Duration::from_secs(10);
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut rows = Vec::new();
    for element in committed.elements() {
        // Without explicit topics, only what the group reads (has committed) is reported.
        if !explicit && !matches!(element.offset(), Offset::Offset(_)) {
            continue;
        }
        let (low, high) =
            consumer.fetch_watermarks(element.topic(), element.partition(), timeout)?;
        let committed = match element.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        };
        rows.push(PartitionLag {
            topic: element.topic().to_owned(),
            partition: element.partition(),
            committed,
            low,
            high,
        });
    }
    rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    Ok(rows)
}

pub fn render(rows: &[PartitionLag]) -> String {
    let total: i64 = rows.iter().map(PartitionLag::lag).sum();
    let mut out =
        format!("total lag {total}\nTOPIC\tPARTITION\tCOMMITTED\tLOG START\tLOG END\tLAG\n");
    for r in rows {
        let committed = r.committed.map_or_else(|| "-".to_owned(), |c| c.to_string());
        out.push_str(&format!(
            "{}\t{}\t{committed}\t{}\t{}\t{}\n",
            r.topic,
            r.partition,
            r.low,
            r.high,
            r.lag()
        ));
    }
    out
}

/// One partition's move in `herald groups reset-offsets`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub topic: String,
    pub partition: i32,
    pub from: Option<i64>,
    pub to: i64,
}

/// Moves `group`'s committed offsets on every partition it reads (or of `topics`, when
/// given) to the first record at or after `at_ms`, or the log end when there is none.
/// The group must have no running members: the broker refuses commits from outside a live
/// group, and a member would overwrite them.
pub fn reset_to_datetime(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    explicit: bool,
    (at_ms, dry_run): (i64, bool),
) -> anyhow::Result<Vec<Reset>> {
    let positions = lag(kafka, group, topics, explicit)?;
    let consumer = group_consumer(kafka, group)?;
    let timeout = Duration::from_secs(10);
    let mut by_time = TopicPartitionList::new();
    for p in &positions {
        by_time.add_partition_offset(&p.topic, p.partition, Offset::Offset(at_ms))?;
    }
    let found = consumer
        .offsets_for_times(by_time, timeout)
        .map_err(|e| anyhow::anyhow!("the broker cannot look offsets up by time: {e}"))?;
    let mut resets = Vec::new();
    let mut commit = TopicPartitionList::new();
    for p in &positions {
        let to = found
            .find_partition(&p.topic, p.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            })
            .unwrap_or(p.high)
            .clamp(p.low, p.high);
        commit.add_partition_offset(&p.topic, p.partition, Offset::Offset(to))?;
        resets.push(Reset {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.committed,
            to,
        });
    }
    if !dry_run && !resets.is_empty() {
        consumer.commit(&commit, rdkafka::consumer::CommitMode::Sync).map_err(|e| {
            anyhow::anyhow!("cannot commit for group {group} (stop its consumers first): {e}")
        })?;
    }
    Ok(resets)
}

pub fn render_resets(resets: &[Reset], dry_run: bool) -> String {
    let verb = if dry_run { "would move" } else { "moved" };
    let mut out = format!("{verb} {} partition(s)\nTOPIC\tPARTITION\tFROM\tTO\n", resets.len());
    for r in resets {
        let from = r.from.map_or_else(|| "-".to_owned(), |o| o.to_string());
        out.push_str(&format!("{}\t{}\t{from}\t{}\n", r.topic, r.partition, r.to));
    }
    out
}
