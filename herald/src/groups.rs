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

/// Committed offsets and watermarks of `group` on `topics`, without joining the group.
/// With `explicit`, every partition of `topics` is reported; otherwise only those the group
/// has committed offsets for.
pub fn lag(
    kafka: &KafkaConfig,
    group: &str,
    topics: &[String],
    explicit: bool,
) -> anyhow::Result<Vec<PartitionLag>> {
    let mut config = ClientConfig::new();
    for (key, value) in kafka.client_properties()? {
        config.set(key, value);
    }
    config.set("group.id", group).set("enable.auto.commit", "false");
    let consumer: BaseConsumer = config.create()?;
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
