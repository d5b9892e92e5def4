//! Per-partition workers: records of a partition are spread over lanes by key, so one key's
//! records run in order and different keys run concurrently; each partition's tracker knows
//! which offset may be stored.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Handler, TopicPartition, lock};
use crate::kafka::tracker::OffsetTracker;
use crate::metrics;

/// Holds one unit of the in-flight budget until dropped.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

struct Dispatched {
    message: OwnedMessage,
    _budget: InFlight,
}

struct PartitionWorker {
    lanes: Vec<Option<mpsc::UnboundedSender<Dispatched>>>,
    tasks: Vec<JoinHandle<()>>,
    tracker: Arc<Mutex<OffsetTracker>>,
    /// Cancelled when the partition is revoked: lanes finish the record they are handling
    /// and start no other; the next owner gets the rest.
    revoked: CancellationToken,
    /// Cancelled when the drain deadline passes: lanes abandon even the current record.
    abandon: CancellationToken,
}

/// The workers of every partition this member holds records of.
pub(super) struct Partitions<H> {
    group: String,
    handler: Arc<H>,
    lanes_per_partition: usize,
    drain_deadline: Duration,
    runtime: tokio::runtime::Handle,
    workers: Mutex<HashMap<TopicPartition, PartitionWorker>>,
    in_flight: Arc<AtomicUsize>,
}

impl<H: Handler> Partitions<H> {
    pub(super) fn new(
        group: String,
        handler: Arc<H>,
        lanes_per_partition: usize,
        drain_deadline: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            group,
            handler,
            lanes_per_partition: lanes_per_partition.max(1),
            drain_deadline,
            runtime,
            workers: Mutex::default(),
            in_flight: Arc::default(),
        }
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    /// Records dispatched and not finished (or dropped) yet.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(super) fn with_work(&self) -> Vec<TopicPartition> {
        lock(&self.workers).keys().cloned().collect()
    }

    /// Hands `message` to the lane of its key.
    pub(super) fn dispatch(&self, message: OwnedMessage) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let budget = InFlight(Arc::clone(&self.in_flight));
        let tp = (message.topic().to_owned(), message.partition());
        let mut workers = lock(&self.workers);
        let worker = workers.entry(tp).or_insert_with(|| PartitionWorker {
            lanes: (0..self.lanes_per_partition).map(|_| None).collect(),
            tasks: Vec::new(),
            tracker: Arc::default(),
            revoked: CancellationToken::new(),
            abandon: CancellationToken::new(),
        });
        let lanes = worker.lanes.len() as u64;
        let lane_index = match message.key() {
            Some(key) => {
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % lanes) as usize
            }
            None => (message.offset().unsigned_abs() % lanes) as usize,
        };
        lock(&worker.tracker).dispatched(message.offset());
        let lane = worker.lanes[lane_index].get_or_insert_with(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            let lane = Lane {
                group: self.group.clone(),
                handler: Arc::clone(&self.handler),
                tracker: Arc::clone(&worker.tracker),
                revoked: worker.revoked.clone(),
                abandon: worker.abandon.clone(),
            };
            worker.tasks.push(self.runtime.spawn(lane.run(rx)));
            tx
        });
        // A lane stops only after its partition's worker left the map, so this cannot fail
        // while the worker is reachable here.
        if lane.send(Dispatched { message, _budget: budget }).is_err() {
            tracing::error!(group = %self.group, "lane closed while its partition is assigned");
        }
    }

    /// The offsets that moved since the last call: the finished prefix of each partition.
    pub(super) fn finished_offsets(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), worker) in lock(&self.workers).iter() {
            if let Some(next) = lock(&worker.tracker).take_to_store() {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
            }
        }
        tpl
    }

    /// Stops taking records for `partitions`, lets the records being handled finish under
    /// the drain deadline (blocking the calling thread), and returns the offsets to commit.
    /// Fetched records that did not start are dropped: the next owner gets them.
    pub(super) fn drain(&self, partitions: &[TopicPartition]) -> TopicPartitionList {
        let mut drained: Vec<(TopicPartition, PartitionWorker)> = {
            let mut workers = lock(&self.workers);
            partitions.iter().filter_map(|tp| workers.remove(tp).map(|w| (tp.clone(), w))).collect()
        };
        let mut tpl = TopicPartitionList::new();
        if drained.is_empty() {
            return tpl;
        }
        let unfinished: usize = drained.iter().map(|(_, w)| lock(&w.tracker).unfinished()).sum();
        tracing::info!(group = %self.group, partitions = drained.len(), unfinished, "draining partitions");
        let mut tasks = Vec::new();
        for (_, worker) in &mut drained {
            worker.revoked.cancel();
            worker.lanes.clear();
            tasks.append(&mut worker.tasks);
        }
        let deadline = self.drain_deadline;
        let in_time = self.runtime.block_on(async {
            let all = async {
                for task in &mut tasks {
                    let _ = task.await;
                }
            };
            tokio::time::timeout(deadline, all).await.is_ok()
        });
        if !in_time {
            let abandoned = tasks.iter().filter(|t| !t.is_finished()).count();
            tracing::warn!(group = %self.group, ?deadline, abandoned, "drain deadline passed; abandoning records in flight to the next owner");
            metrics::consumer_abandoned(&self.group, abandoned);
            for (_, worker) in &drained {
                worker.abandon.cancel();
            }
            // Only tasks that were not awaited to completion may be awaited again.
            tasks.retain(|task| !task.is_finished());
            self.runtime.block_on(futures::future::join_all(tasks));
        }
        for ((topic, partition), worker) in &drained {
            if let Some(next) = lock(&worker.tracker).committable() {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
            }
        }
        tpl
    }
}

struct Lane<H> {
    group: String,
    handler: Arc<H>,
    tracker: Arc<Mutex<OffsetTracker>>,
    revoked: CancellationToken,
    abandon: CancellationToken,
}

/// Back-off between attempts when a handler could not make a record durable.
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

impl<H: Handler> Lane<H> {
    async fn run(self, mut records: mpsc::UnboundedReceiver<Dispatched>) {
        loop {
            let next = tokio::select! {
                biased;
                () = self.revoked.cancelled() => return,
                next = records.recv() => next,
            };
            let Some(dispatched) = next else { return };
            let offset = dispatched.message.offset();
            if !self.handle_until_durable(&dispatched.message).await {
                return;
            }
            lock(&self.tracker).finished(offset);
        }
    }

    /// Returns false if the record was given up (revoked or abandoned) before it finished.
    async fn handle_until_durable(&self, message: &OwnedMessage) -> bool {
        let mut backoff = RETRY_START;
        loop {
            let started = std::time::Instant::now();
            let result = tokio::select! {
                biased;
                () = self.abandon.cancelled() => return false,
                result = self.handler.handle(message) => result,
            };
            metrics::consumer_handled(&self.group, result.is_ok(), started.elapsed());
            let Err(e) = result else { return true };
            tracing::warn!(
                group = %self.group, topic = message.topic(), partition = message.partition(),
                offset = message.offset(), error = %e, retry_in = ?backoff,
                "record not durable yet; retrying"
            );
            // A revoked partition's failing record is the next owner's to retry.
            tokio::select! {
                biased;
                () = self.abandon.cancelled() => return false,
                () = self.revoked.cancelled() => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
}
