//! Where a fault run's records wait. While the run goes on, the watched groups' committed
//! offsets are sampled: a partition with records to read whose group's committed offset
//! does not move is unconsumed (a killed member still holds it, or nobody does). At the end,
//! the records the groups have not finished are read: a notification among them was not
//! lost but is late, and where it sits is named.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use herald_runtime::KafkaConfig;
use herald_runtime::kafka::group_offsets::{self, PartitionLag};
use herald_runtime::kafka::{Message, header_str, reader};
use herald_schemas::headers;
use rdkafka::consumer::Consumer;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// A consumer group of the run and what it reads.
#[derive(Debug, Clone)]
pub(super) struct Watched {
    pub(super) group: String,
    /// Each topic with how long its head record may rightly wait (a retry tier's delay, or a
    /// claim's timeout for a record waiting for a killed dispatcher's claim to go stale).
    pub(super) topics: Vec<(String, Duration)>,
}

/// The longest a partition went unconsumed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Unconsumed {
    pub seconds: f64,
    pub topic: String,
    pub partition: i32,
    /// When the wait began, in seconds from the run's start.
    pub began_at_seconds: f64,
}

/// Samples every `every` until `stop`; returns the longest wait beyond what a partition's
/// head may rightly wait. Blocking: run it on a blocking thread.
pub(super) fn sample_until(
    kafka: &KafkaConfig,
    watched: &[Watched],
    started: Instant,
    every: Duration,
    stop: &CancellationToken,
) -> Unconsumed {
    let clients: Vec<_> = watched
        .iter()
        .filter_map(|w| Some((w, group_offsets::group_client(kafka, &w.group).ok()?)))
        .collect();
    // Per partition: the committed offset last seen and since when it has not moved while
    // there was something to read.
    let mut since: HashMap<(String, i32), (Option<i64>, Instant)> = HashMap::new();
    let mut worst = Unconsumed::default();
    while !stop.is_cancelled() {
        for (watch, client) in &clients {
            let topics: Vec<String> = watch.topics.iter().map(|(t, _)| t.clone()).collect();
            let Ok(rows) = group_offsets::positions(client, &watch.group, &topics) else {
                continue;
            };
            let now = Instant::now();
            for row in rows {
                let key = (row.topic.clone(), row.partition);
                let entry = since.entry(key).or_insert((row.committed, now));
                if row.lag() == 0 || entry.0 != row.committed {
                    *entry = (row.committed, now);
                    continue;
                }
                let allowed = watch
                    .topics
                    .iter()
                    .find(|(t, _)| *t == row.topic)
                    .map_or(Duration::ZERO, |(_, d)| *d);
                let waited = now.duration_since(entry.1).saturating_sub(allowed);
                if waited.as_secs_f64() > worst.seconds {
                    worst = Unconsumed {
                        seconds: waited.as_secs_f64(),
                        topic: row.topic.clone(),
                        partition: row.partition,
                        began_at_seconds: (entry.1 + allowed).duration_since(started).as_secs_f64(),
                    };
                }
            }
        }
        std::thread::sleep(every);
    }
    worst
}

/// Records a group has not finished on one partition.
#[derive(Debug, Clone, Serialize)]
pub struct Unfinished {
    pub group: String,
    pub topic: String,
    pub partition: i32,
    pub committed: Option<i64>,
    pub end: i64,
    /// Notification ids among them not delivered when the run ended.
    pub late: usize,
}

/// Where the notifications of `undelivered` sit, still durable: each partition some watched
/// group has not finished, read from its committed offset to its end. Returns those
/// partitions and the late notifications' ids. Blocking.
pub(super) fn late(
    kafka: &KafkaConfig,
    watched: &[Watched],
    undelivered: &BTreeSet<String>,
) -> anyhow::Result<(Vec<Unfinished>, BTreeSet<String>)> {
    let mut partitions = Vec::new();
    let mut late = BTreeSet::new();
    for watch in watched {
        let topics: Vec<String> = watch.topics.iter().map(|(t, _)| t.clone()).collect();
        let rows = group_offsets::lag(kafka, &watch.group, &topics)?;
        for row in rows.into_iter().filter(|r| r.lag() > 0) {
            let ids = ids_in(kafka, &row)?;
            let here: BTreeSet<String> = ids.intersection(undelivered).cloned().collect();
            partitions.push(Unfinished {
                group: watch.group.clone(),
                topic: row.topic.clone(),
                partition: row.partition,
                committed: row.committed,
                end: row.high,
                late: here.len(),
            });
            late.extend(here);
        }
    }
    Ok((partitions, late))
}

/// The notification ids of the records of `row`'s partition its group has not read.
fn ids_in(kafka: &KafkaConfig, row: &PartitionLag) -> anyhow::Result<BTreeSet<String>> {
    let consumer = reader(kafka, "herald-chaos-late")?;
    let from = row.committed.unwrap_or(row.low).max(row.low);
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&row.topic, row.partition, Offset::Offset(from))?;
    consumer.assign(&assignment)?;
    let mut ids = BTreeSet::new();
    let mut idle = 0;
    let mut next = from;
    while next < row.high && idle < 50 {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                idle = 0;
                next = message.offset() + 1;
                if let Some(id) = header_str(&message, headers::NOTIFICATION_ID) {
                    ids.insert(id.to_owned());
                }
            }
            Some(Err(e)) => anyhow::bail!("reading {} partition {}: {e}", row.topic, row.partition),
            None => idle += 1,
        }
    }
    Ok(ids)
}

/// One line per unfinished partition, for the report.
pub(super) fn render(unfinished: &[Unfinished]) -> String {
    let mut by_topic: BTreeMap<(&str, i32), &Unfinished> = BTreeMap::new();
    for u in unfinished {
        by_topic.insert((u.topic.as_str(), u.partition), u);
    }
    by_topic
        .values()
        .map(|u| {
            let committed = u.committed.map_or_else(|| "-".to_owned(), |c| c.to_string());
            format!(
                "  {} partition {} ({}): committed {committed}, end {}, {} late\n",
                u.topic, u.partition, u.group, u.end, u.late
            )
        })
        .collect()
}
