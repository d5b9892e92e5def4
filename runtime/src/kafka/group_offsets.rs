//! A consumer group's committed offsets, read and moved from outside the group: what
//! `herald groups lag` and `reset-offsets` show and do, and where a role that starts reading
//! a topic late (the webhook sender) begins.
//!
//! These calls block (librdkafka's synchronous API with timeouts); call them from
//! `spawn_blocking` in async code.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

use crate::config::{KafkaConfig, SecretError};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GroupOffsetsError {
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("cannot create a Kafka client for group {group}: {source}")]
    Client { group: String, source: KafkaError },
    #[error("cannot read {what} for group {group}: {source}")]
    Read { group: String, what: &'static str, source: KafkaError },
    #[error("the broker cannot look offsets up by time: {0}")]
    ByTime(KafkaError),
    #[error("cannot commit for group {group} (stop its consumers first): {source}")]
    Commit { group: String, source: KafkaError },
}

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

/// One partition's move by [`reset_to_time`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reset {
    pub topic: String,
    pub partition: i32,
    pub from: Option<i64>,
    pub to: i64,
}

/// The group id (after `kafka.group_prefix`) of clients that only read metadata, watermarks
/// or a record; they never join it.
pub const PROBE_GROUP: &str = "probe";

/// A client for watermarks, metadata and single records, in no group.
pub fn probe(kafka: &KafkaConfig) -> Result<BaseConsumer, GroupOffsetsError> {
    group_client(kafka, &kafka.group(PROBE_GROUP))
}

/// A client speaking for `group` without joining it.
pub fn group_client(kafka: &KafkaConfig, group: &str) -> Result<BaseConsumer, GroupOffsetsError> {
    let mut config = ClientConfig::new();
    for (key, value) in kafka.client_properties()? {
        config.set(key, value);
    }
    config.set("group.id", group).set("enable.auto.commit", "false");
    config.create().map_err(|source| GroupOffsetsError::Client { group: group.to_owned(), source })
}

/// Committed offsets and watermarks of `group` on every partition of `topics`, without
/// joining the group.
pub fn lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
) -> Result<Vec<PartitionLag>, GroupOffsetsError> {
    positions(&group_client(kafka, group)?, group, topics)
}

/// [`lag`] through a client of `group` the caller already has (see [`group_client`]), for
/// one who asks again and again.
pub fn positions(
    consumer: &BaseConsumer,
    group: &str,
    topics: &[String],
) -> Result<Vec<PartitionLag>, GroupOffsetsError> {
    let read =
        |what| move |source| GroupOffsetsError::Read { group: group.to_owned(), what, source };
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT).map_err(read("metadata"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                tpl.add_partition(t.name(), p.id());
            }
        }
    }
    let committed = consumer.committed_offsets(tpl, TIMEOUT).map_err(read("committed offsets"))?;
    let mut rows = Vec::new();
    for element in committed.elements() {
        let (low, high) =
            super::watermarks(consumer, element.topic(), element.partition(), TIMEOUT)
                .map_err(read("watermarks"))?;
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

/// Moves `group`'s committed offsets on every partition of `topics` to the first record at or
/// after `at_ms`, or the log end when there is none; commits nothing in a dry run.
/// The group must have no running members: the broker refuses commits from outside a live
/// group, and a member would overwrite them.
pub fn reset_to_time(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    at_ms: i64,
    mode: super::ChangeMode,
) -> Result<Vec<Reset>, GroupOffsetsError> {
    let consumer = group_client(kafka, group)?;
    let positions = positions(&consumer, group, topics)?;
    // Made once, when a partition needs its last record read (see below).
    let mut probe_client = None;
    let mut by_time = TopicPartitionList::new();
    for p in &positions {
        by_time
            .add_partition_offset(&p.topic, p.partition, Offset::Offset(at_ms))
            .map_err(GroupOffsetsError::ByTime)?;
    }
    let found = consumer.offsets_for_times(by_time, TIMEOUT).map_err(GroupOffsetsError::ByTime)?;
    let mut resets = Vec::new();
    let mut commit = TopicPartitionList::new();
    for p in &positions {
        let mut to = found
            .find_partition(&p.topic, p.partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) if o >= 0 => Some(o),
                _ => None,
            })
            .unwrap_or(p.high)
            .clamp(p.low, p.high);
        // Tansu 0.6 answers offset 0 when no record is that recent, where Kafka answers
        // "none" (-1): an answer at the log start holds only if the last record is as recent.
        if to == p.low && p.high > p.low {
            let reader = match &mut probe_client {
                Some(reader) => reader,
                empty @ None => empty.insert(probe(kafka)?),
            };
            let last = timestamp_at(reader, &p.topic, p.partition, p.high - 1)?;
            if last.is_some_and(|t| t < at_ms) {
                to = p.high;
            }
        }
        commit
            .add_partition_offset(&p.topic, p.partition, Offset::Offset(to))
            .map_err(|source| GroupOffsetsError::Commit { group: group.to_owned(), source })?;
        resets.push(Reset {
            topic: p.topic.clone(),
            partition: p.partition,
            from: p.committed,
            to,
        });
    }
    if !mode.is_dry_run() && !resets.is_empty() {
        consumer
            .commit(&commit, rdkafka::consumer::CommitMode::Sync)
            .map_err(|source| GroupOffsetsError::Commit { group: group.to_owned(), source })?;
    }
    Ok(resets)
}

/// The timestamp of the record at `offset`, read by `consumer` (a [`probe`], assigned to
/// that partition alone); `None` if it could not be read within the timeout.
fn timestamp_at(
    consumer: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<i64>, GroupOffsetsError> {
    let read = |source| GroupOffsetsError::Read {
        group: PROBE_GROUP.to_owned(),
        what: "a record",
        source,
    };
    let mut at = TopicPartitionList::new();
    at.add_partition_offset(topic, partition, Offset::Offset(offset)).map_err(read)?;
    consumer.assign(&at).map_err(read)?;
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(record)) => return Ok(record.timestamp().to_millis()),
            Some(Err(source)) => return Err(read(source)),
            None => {}
        }
    }
    Ok(None)
}
