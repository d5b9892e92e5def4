//! The tail: every enricher process reads every partition of the directory topics, keys
//! only, to learn which subjects changed at which offsets. It starts where the applier had
//! got to (what came before is in the store), pauses while too many changes it read wait to
//! be applied, and looks for new partitions now and then.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use herald_runtime::kafka::producer::LogContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::Event;
use super::ends::Ends;
use super::ledger::{Partition, Subject};

/// Changes read and not applied yet beyond which the tail stops reading: it bounds the
/// memory a backlog of the applier takes in every enricher.
pub(crate) const MAX_UNAPPLIED: usize = 200_000;
/// How often the topics' partitions are looked up again (partitions added).
const METADATA_EVERY: Duration = Duration::from_secs(30);
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one poll waits for a record.
const POLL: Duration = Duration::from_millis(20);

/// Which topic says what: user changes or templates.
#[derive(Debug, Clone)]
pub(crate) struct Topics {
    pub(crate) changes: Arc<str>,
    pub(crate) templates: Arc<str>,
}

impl Topics {
    fn all(&self) -> [&Arc<str>; 2] {
        [&self.changes, &self.templates]
    }

    /// The shared name of `topic`, if it is one of the directory topics.
    pub(crate) fn named(&self, topic: &str) -> Option<Arc<str>> {
        self.all().into_iter().find(|t| ***t == *topic).cloned()
    }

    fn subject(&self, topic: &str, key: &str) -> Option<Subject> {
        if topic == &*self.changes {
            Some(Subject::User(key.to_owned()))
        } else if topic == &*self.templates {
            Some(Subject::Template(key.to_owned()))
        } else {
            None
        }
    }
}

/// Every partition of the directory topics, or why they cannot be known.
pub(crate) fn partitions(
    consumer: &BaseConsumer<LogContext>,
    topics: &Topics,
) -> Result<Vec<Partition>, String> {
    let mut all = Vec::new();
    for topic in topics.all() {
        let metadata = consumer
            .fetch_metadata(Some(topic), METADATA_TIMEOUT)
            .map_err(|e| format!("{topic}: {e}"))?;
        let found: Vec<Partition> = metadata
            .topics()
            .iter()
            .filter(|t| t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| (Arc::clone(topic), p.id())))
            .collect();
        if found.is_empty() {
            return Err(format!("topic {topic} does not exist (herald topics apply creates it)"));
        }
        all.extend(found);
    }
    Ok(all)
}

pub(crate) struct Tail {
    pub(crate) consumer: Arc<BaseConsumer<LogContext>>,
    pub(crate) topics: Topics,
    pub(crate) ends: Arc<Ends>,
    pub(crate) events: UnboundedSender<Event>,
    pub(crate) unapplied: Arc<AtomicUsize>,
    /// Where each partition is applied up to, as the store said at start: the tail starts
    /// there.
    pub(crate) applied: HashMap<Partition, i64>,
}

impl Tail {
    /// Assigns `partitions` from where they are applied (the start of a partition never
    /// applied), and tells the ledger.
    fn assign(&self, partitions: &[Partition]) -> Result<(), rdkafka::error::KafkaError> {
        let mut list = TopicPartitionList::new();
        for partition in partitions {
            let next = self.applied.get(partition).copied();
            let offset = next.map_or(Offset::Beginning, Offset::Offset);
            list.add_partition_offset(&partition.0, partition.1, offset)?;
            let _ = self.events.send(Event::Started(partition.clone(), next.unwrap_or(0)));
        }
        self.consumer.incremental_assign(&list)
    }

    /// Reads until `shutdown`; blocks its thread.
    pub(crate) fn run(self, mut known: Vec<Partition>, shutdown: &CancellationToken) {
        if let Err(e) = self.assign(&known) {
            tracing::error!(error = %e, "the directory tail cannot read its partitions");
        }
        let mut paused = false;
        let mut looked_up = Instant::now();
        let mut since_positions = 0_usize;
        while !shutdown.is_cancelled() {
            let over = self.unapplied.load(Ordering::Acquire) > MAX_UNAPPLIED;
            if over != paused {
                paused = over;
                self.pause(paused, &known);
            }
            if looked_up.elapsed() >= METADATA_EVERY {
                looked_up = Instant::now();
                known = self.look_for_new(known);
            }
            match self.consumer.poll(POLL) {
                Some(Ok(record)) => {
                    let topic: &str = record.topic();
                    let Some(partition) = known
                        .iter()
                        .find(|(t, p)| &**t == topic && *p == record.partition())
                        .cloned()
                    else {
                        continue;
                    };
                    let key = record.key().and_then(|k| std::str::from_utf8(k).ok());
                    let event = match key.and_then(|key| self.topics.subject(topic, key)) {
                        Some(subject) => {
                            self.unapplied.fetch_add(1, Ordering::AcqRel);
                            Event::Read(partition, record.offset(), subject)
                        }
                        // Without a usable key there is no subject: the applier dead-letters it.
                        None => Event::Moved(partition, record.offset() + 1),
                    };
                    if self.events.send(event).is_err() {
                        return;
                    }
                    since_positions += 1;
                    if since_positions >= 1_000 {
                        since_positions = 0;
                        self.report_positions(&known);
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "directory tail"),
                // Idle: the consumer's positions pass what it does not hand over.
                None => self.report_positions(&known),
            }
        }
    }

    fn report_positions(&self, known: &[Partition]) {
        let Ok(positions) = self.consumer.position() else { return };
        for element in positions.elements() {
            if let Offset::Offset(next) = element.offset()
                && let Some(partition) =
                    known.iter().find(|(t, p)| &**t == element.topic() && *p == element.partition())
            {
                let _ = self.events.send(Event::Moved(partition.clone(), next));
            }
        }
    }

    fn pause(&self, pause: bool, known: &[Partition]) {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in known {
            list.add_partition(topic, *partition);
        }
        let result = if pause { self.consumer.pause(&list) } else { self.consumer.resume(&list) };
        if let Err(e) = result {
            tracing::warn!(error = %e, "directory tail: pause/resume failed");
        } else if pause {
            tracing::warn!(
                limit = MAX_UNAPPLIED,
                "directory tail paused: too many changes wait to be applied (is an enricher applying them?)"
            );
        }
    }

    fn look_for_new(&self, known: Vec<Partition>) -> Vec<Partition> {
        let Ok(now) = partitions(&self.consumer, &self.topics) else { return known };
        let added: Vec<Partition> = now.iter().filter(|p| !known.contains(p)).cloned().collect();
        if added.is_empty() {
            return known;
        }
        tracing::info!(added = added.len(), "directory topics have new partitions");
        match self.assign(&added) {
            Ok(()) => {
                self.ends.set_partitions(now.clone());
                now
            }
            Err(e) => {
                tracing::warn!(error = %e, "directory tail cannot read new partitions");
                known
            }
        }
    }
}
