//! Per-partition workers: records of a partition are spread over key queues by key, so one key's
//! records start in order and different keys run concurrently; a key queue keeps a few started
//! records awaiting acknowledgement within the partition's budget of started records; each
//! partition's tracker knows which offset may be stored.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Handler, HandlerError, TopicPartition, lock};
use crate::kafka::offset_tracker::OffsetTracker;
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
    key_queues: Vec<Option<mpsc::UnboundedSender<Vec<Dispatched>>>>,
    tasks: Vec<JoinHandle<()>>,
    tracker: Arc<Mutex<OffsetTracker>>,
    /// Turns to start a record, one per key queue: a busy key may use the turns of idle key queues,
    /// while the records started and not yet durable (and their outputs in the producer's
    /// memory) stay as many as if each key queue held one.
    started: Arc<Semaphore>,
    /// Cancelled when the partition is revoked: key queues finish the record they are handling
    /// and start no other; the next owner gets the rest.
    revoked: CancellationToken,
    /// Cancelled when the drain deadline passes: key queues abandon even the current record.
    abandon: CancellationToken,
}

/// The workers of every partition this member holds records of.
/// How a partition's records are spread: over `per_partition` key queues (records of one
/// key stay in order in one), each with up to `pipelined_per_key` records being handled.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyQueues {
    pub(super) per_partition: usize,
    pub(super) pipelined_per_key: usize,
}

pub(super) struct Partitions<H> {
    group: String,
    handled: metrics::HandledSeries,
    handler: Arc<H>,
    key_queues_per_partition: usize,
    pipelined_per_key: usize,
    drain_deadline: Duration,
    runtime: tokio::runtime::Handle,
    workers: Mutex<HashMap<TopicPartition, PartitionWorker>>,
    in_flight: Arc<AtomicUsize>,
}

impl<H: Handler> Partitions<H> {
    pub(super) fn new(
        group: String,
        handler: Arc<H>,
        key_queues: KeyQueues,
        drain_deadline: Duration,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            handled: metrics::HandledSeries::of(&group),
            group,
            handler,
            key_queues_per_partition: key_queues.per_partition.max(1),
            pipelined_per_key: key_queues.pipelined_per_key.max(1),
            drain_deadline,
            runtime,
            workers: Mutex::default(),
            in_flight: Arc::default(),
        }
    }

    pub(super) fn runtime(&self) -> &tokio::runtime::Handle {
        &self.runtime
    }

    pub(super) fn handler(&self) -> &H {
        &self.handler
    }

    /// Records dispatched and not finished (or dropped) yet.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(super) fn with_work(&self) -> Vec<TopicPartition> {
        lock(&self.workers).keys().cloned().collect()
    }

    /// Hands each record of `messages` (in offset order per partition) to the key queue of its
    /// key: one lock of the workers for the batch, and one send to each key queue with the
    /// batch's records for it, so a queue wakes once per batch, not once per record.
    pub(super) fn dispatch(&self, messages: Vec<OwnedMessage>) {
        if messages.is_empty() {
            return;
        }
        self.in_flight.fetch_add(messages.len(), Ordering::AcqRel);
        let mut workers = lock(&self.workers);
        // Records for each key queue, in the order they arrived: a queue's order is all
        // that matters, so the queues may be sent to in any order.
        let mut outgoing: HashMap<(TopicPartition, usize), Vec<Dispatched>> = HashMap::new();
        for message in messages {
            let budget = InFlight(Arc::clone(&self.in_flight));
            let tp = (message.topic().to_owned(), message.partition());
            let worker = workers.entry(tp.clone()).or_insert_with(|| self.worker());
            let queues = worker.key_queues.len() as u64;
            let queue_index = match message.key() {
                Some(key) => {
                    let mut hasher = DefaultHasher::new();
                    key.hash(&mut hasher);
                    (hasher.finish() % queues) as usize
                }
                None => (message.offset().unsigned_abs() % queues) as usize,
            };
            lock(&worker.tracker).dispatched(message.offset());
            outgoing
                .entry((tp, queue_index))
                .or_default()
                .push(Dispatched { message, _budget: budget });
        }
        for ((tp, queue_index), batch) in outgoing {
            let Some(worker) = workers.get_mut(&tp) else { continue };
            let queue = worker.key_queues[queue_index].get_or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                let queue = KeyQueue {
                    group: self.group.clone(),
                    handled: self.handled.clone(),
                    handler: Arc::clone(&self.handler),
                    tracker: Arc::clone(&worker.tracker),
                    started: Arc::clone(&worker.started),
                    pipelined_per_key: self.pipelined_per_key,
                    revoked: worker.revoked.clone(),
                    abandon: worker.abandon.clone(),
                };
                worker.tasks.push(self.runtime.spawn(queue.run(rx)));
                tx
            });
            // A key queue stops only after its partition's worker left the map, so this
            // cannot fail while the worker is reachable here.
            if queue.send(batch).is_err() {
                tracing::error!(group = %self.group, "key queue closed while its partition is assigned");
            }
        }
    }

    /// A worker for a partition this member starts taking records of.
    fn worker(&self) -> PartitionWorker {
        PartitionWorker {
            key_queues: (0..self.key_queues_per_partition).map(|_| None).collect(),
            tasks: Vec::new(),
            tracker: Arc::default(),
            started: Arc::new(Semaphore::new(self.key_queues_per_partition)),
            revoked: CancellationToken::new(),
            abandon: CancellationToken::new(),
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
            worker.key_queues.clear();
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

struct KeyQueue<H> {
    group: String,
    handled: metrics::HandledSeries,
    handler: Arc<H>,
    tracker: Arc<Mutex<OffsetTracker>>,
    started: Arc<Semaphore>,
    pipelined_per_key: usize,
    revoked: CancellationToken,
    abandon: CancellationToken,
}

/// Back-off between attempts when a handler could not make a record durable.
const RETRY_START: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// A started record and the wait for its outputs.
type Waiting =
    Pin<Box<dyn Future<Output = (Dispatched, Instant, Result<(), HandlerError>)> + Send>>;

enum Next {
    Records(Option<Vec<Dispatched>>),
    Turn(OwnedSemaphorePermit),
    Durable(Dispatched, Instant, Result<(), HandlerError>),
}

impl<H: Handler> KeyQueue<H> {
    async fn run(self, mut records: mpsc::UnboundedReceiver<Vec<Dispatched>>) {
        let mut waiting: FuturesOrdered<Waiting> = FuturesOrdered::new();
        // Records taken from the queue, in order; the first waits for a turn to start.
        let mut queued: VecDeque<Dispatched> = VecDeque::new();
        loop {
            let next = tokio::select! {
                biased;
                () = self.revoked.cancelled() => break,
                Some((dispatched, started, result)) = waiting.next() => {
                    Next::Durable(dispatched, started, result)
                }
                Ok(turn) = Arc::clone(&self.started).acquire_owned(),
                    if !queued.is_empty() && waiting.len() < self.pipelined_per_key => {
                    Next::Turn(turn)
                }
                next = records.recv(), if queued.is_empty() => Next::Records(next),
            };
            let dispatched = match next {
                Next::Records(None) => break,
                Next::Records(Some(batch)) => {
                    queued.extend(batch);
                    continue;
                }
                Next::Turn(turn) => {
                    let Some(dispatched) = queued.pop_front() else { continue };
                    let started = Instant::now();
                    let result = tokio::select! {
                        biased;
                        () = self.abandon.cancelled() => return,
                        // Boxed: held inline, the handler's largest future would sit in
                        // every key queue's task for its whole life, a large share of the
                        // enricher's peak RSS with many queues.
                        result = Box::pin(self.handler.start(&dispatched.message)) => result,
                    };
                    match result {
                        Ok(Some(durable)) => {
                            waiting.push_back(Box::pin(async move {
                                let result = durable.await;
                                drop(turn);
                                (dispatched, started, result)
                            }));
                            continue;
                        }
                        Ok(None) => {
                            drop(turn);
                            self.handled.handled(true, started.elapsed());
                            dispatched
                        }
                        Err(e) => {
                            drop(turn);
                            self.handled.handled(false, started.elapsed());
                            if !self.handle_until_durable(&dispatched.message, e).await {
                                return;
                            }
                            dispatched
                        }
                    }
                }
                Next::Durable(dispatched, started, result) => {
                    self.handled.handled(result.is_ok(), started.elapsed());
                    if let Err(e) = result
                        && !self.handle_until_durable(&dispatched.message, e).await
                    {
                        return;
                    }
                    dispatched
                }
            };
            lock(&self.tracker).finished(dispatched.message.offset());
        }
        // Revoked or closed: what was started finishes unless the drain deadline passes; a
        // record whose outputs failed, and one that had not started, are the next owner's.
        loop {
            let next = tokio::select! {
                biased;
                () = self.abandon.cancelled() => return,
                next = waiting.next() => next,
            };
            let Some((dispatched, started, result)) = next else { return };
            self.handled.handled(result.is_ok(), started.elapsed());
            if result.is_ok() {
                lock(&self.tracker).finished(dispatched.message.offset());
            }
        }
    }

    /// Handles a record that failed with `failed` again, with back-off, until its outputs are
    /// durable. Returns false if it was given up (revoked or abandoned) before that.
    async fn handle_until_durable(&self, message: &OwnedMessage, mut failed: HandlerError) -> bool {
        let mut backoff = RETRY_START;
        loop {
            tracing::warn!(
                group = %self.group, topic = message.topic(), partition = message.partition(),
                offset = message.offset(), error = %failed, retry_in = ?backoff,
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
            let started = Instant::now();
            let result = tokio::select! {
                biased;
                () = self.abandon.cancelled() => return false,
                result = Box::pin(self.handler.handle(message)) => result,
            };
            self.handled.handled(result.is_ok(), started.elapsed());
            match result {
                Ok(()) => return true,
                Err(e) => failed = e,
            }
        }
    }
}
