//! `herald replay`: the records of a topic in a time window produced to it again, for data
//! teams re-driving a period through the pipeline. Replayed records keep their key, payload
//! and headers and gain `herald-replayed-at`; their notification ids are unchanged, so the
//! delivery ledger keeps a delivery that was already made from being made twice.

use std::collections::HashMap;
use std::time::Duration;

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::{Header, OwnedHeaders, Producer};
use herald_schemas::headers;
use rdkafka::consumer::Consumer;
use rdkafka::message::{Headers, Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};

use crate::dlq::reader;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Every record of `topic` with a timestamp in `[from_ms, to_ms)`, in offset order per
/// partition.
pub fn read_window(
    kafka: &KafkaConfig,
    topic: &str,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<Vec<OwnedMessage>> {
    let consumer = reader(kafka, "herald-replay")?;
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let partitions: Vec<i32> =
        metadata.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
    anyhow::ensure!(!partitions.is_empty(), "topic {topic} has no partitions (does it exist?)");
    let mut by_time = TopicPartitionList::new();
    for partition in &partitions {
        by_time.add_partition_offset(topic, *partition, Offset::Offset(from_ms))?;
    }
    // Brokers without time lookups (or with none in the window) start at the beginning.
    let starts = consumer.offsets_for_times(by_time, TIMEOUT).ok();
    let mut ends = HashMap::new();
    let mut assignment = TopicPartitionList::new();
    for partition in &partitions {
        let (low, high) = consumer.fetch_watermarks(topic, *partition, TIMEOUT)?;
        let start = starts
            .as_ref()
            .and_then(|s| s.find_partition(topic, *partition))
            .and_then(|p| match p.offset() {
                Offset::Offset(offset) if offset >= low => Some(offset),
                _ => None,
            })
            .unwrap_or(low);
        if high > start {
            ends.insert(*partition, high);
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
        let at = message.timestamp().to_millis().unwrap_or(0);
        if (from_ms..to_ms).contains(&at) {
            found.push(message.detach());
        }
        if ends.get(&partition).is_some_and(|end| message.offset() + 1 >= *end) || at >= to_ms {
            ends.remove(&partition);
        }
    }
    Ok(found)
}

/// Produces `records` to `topic` again, marked as replayed; returns how many.
pub async fn replay(
    kafka: &KafkaConfig,
    topic: &str,
    records: &[OwnedMessage],
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<usize> {
    let producer = Producer::new(kafka, "herald-replay")?;
    let now = herald_schemas::now_millis().to_string();
    for record in records {
        let mut marked = OwnedHeaders::new();
        if let Some(original) = record.headers() {
            for h in original.iter().filter(|h| h.key != headers::REPLAYED_AT) {
                marked = marked.insert(Header { key: h.key, value: h.value });
            }
        }
        marked = marked.insert(Header { key: headers::REPLAYED_AT, value: Some(now.as_str()) });
        let payload = record.payload().unwrap_or_default();
        producer.send(topic, record.key(), payload, Some(marked)).await?;
        progress.inc(1);
    }
    Ok(records.len())
}
