//! The consumer runtime every role's input runs on.
//!
//! - One poll thread owns the librdkafka consumer: it fetches, dispatches records, stores
//!   offsets and serves rebalance callbacks. Only it ever touches the consumer.
//! - Each assigned partition gets a worker with up to `lanes_per_partition` lanes; a record
//!   goes to the lane of its key, so records with one key are handled in order while
//!   different keys proceed concurrently.
//! - `enable.auto.offset.store=false`: a record's offset is stored only when it and every
//!   record before it in its partition finished, i.e. its outputs were acknowledged.
//!   librdkafka's auto-commit then commits stored offsets periodically.
//! - Revoked partitions (rebalance) and all partitions (shutdown) are drained: no new
//!   records; records being handled finish under `drain_deadline_ms` (fetched ones not yet
//!   started are left to the next owner), then the finished prefix is stored and committed.
//!   What misses the deadline is abandoned uncommitted and redelivered to the next owner.
//! - In-flight records are bounded by `max_in_flight`; above it, fetching pauses.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::tracker::OffsetTracker;
use super::{ClientSetupError, base_client_config};
use crate::config::{ConsumerTuning, KafkaConfig};
use crate::metrics;

/// What a consumer reads and as whom.
#[derive(Debug, Clone)]
pub struct ConsumerSpec {
    pub group_id: String,
    pub topics: Vec<String>,
    pub client_id: String,
}

/// The record's outcome could not be made durable (e.g. the broker did not acknowledge an
/// output). The runtime retries the record with back-off and does not store its offset.
/// Bad records are not handler errors: handlers route them to the dead-letter topic.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct HandlerError {
    pub reason: String,
}

impl HandlerError {
    pub fn new(reason: impl std::fmt::Display) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }
}

pub trait Handler: Send + Sync + 'static {
    /// Handles one record. Returns once everything the record causes is durable.
    fn handle(
        &self,
        message: &OwnedMessage,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Setup(#[from] ClientSetupError),
    #[error("group {group} cannot subscribe to {topics:?}: {source}")]
    Subscribe {
        group: String,
        topics: Vec<String>,
        source: rdkafka::error::KafkaError,
    },
    #[error("the poll thread of group {0} failed")]
    PollThread(String),
}

type TopicPartition = (String, i32);

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

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Lanes and the poll thread never leave these structures half-updated.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

struct Shared<H> {
    group: String,
    handler: Arc<H>,
    tuning: ConsumerTuning,
    runtime: tokio::runtime::Handle,
    workers: Mutex<HashMap<TopicPartition, PartitionWorker>>,
    in_flight: Arc<AtomicUsize>,
    assignment_changed: AtomicBool,
}

impl<H: Handler> Shared<H> {
    fn dispatch(&self, message: OwnedMessage) {
        let budget = InFlight(Arc::clone(&self.in_flight));
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        let tp = (message.topic().to_owned(), message.partition());
        let mut workers = lock(&self.workers);
        let worker = workers.entry(tp).or_insert_with(|| PartitionWorker {
            lanes: (0..self.tuning.lanes_per_partition.max(1))
                .map(|_| None)
                .collect(),
            tasks: Vec::new(),
            tracker: Arc::default(),
            revoked: CancellationToken::new(),
            abandon: CancellationToken::new(),
        });
        let lane_index = match message.key() {
            Some(key) => {
                let mut hasher = DefaultHasher::new();
                key.hash(&mut hasher);
                (hasher.finish() % worker.lanes.len() as u64) as usize
            }
            None => (message.offset().unsigned_abs() % worker.lanes.len() as u64) as usize,
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
        // The lane only stops after its sender is dropped or the worker is abandoned; in
        // both cases this worker was removed from the map first, so the send cannot fail.
        if lane
            .send(Dispatched {
                message,
                _budget: budget,
            })
            .is_err()
        {
            tracing::error!(group = %self.group, "lane closed while its partition is assigned");
        }
    }

    /// Hands the finished prefix of every partition to the consumer's offset store.
    fn store_finished(&self, consumer: &BaseConsumer<Ctx<H>>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), worker) in lock(&self.workers).iter() {
            if let Some(next) = lock(&worker.tracker).take_to_store() {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.store_offsets(&tpl)
        {
            tracing::warn!(group = %self.group, error = %e, "storing offsets failed");
        }
    }

    /// Stops taking records for `partitions`, lets in-flight ones finish under the drain
    /// deadline, and commits what finished. Runs on the poll thread (directly at shutdown,
    /// or inside librdkafka's revoke callback), so it may block.
    fn drain(&self, consumer: &BaseConsumer<Ctx<H>>, partitions: &[TopicPartition]) {
        let mut drained: Vec<(TopicPartition, PartitionWorker)> = {
            let mut workers = lock(&self.workers);
            partitions
                .iter()
                .filter_map(|tp| workers.remove(tp).map(|w| (tp.clone(), w)))
                .collect()
        };
        if drained.is_empty() {
            return;
        }
        let unfinished: usize = drained
            .iter()
            .map(|(_, w)| lock(&w.tracker).unfinished())
            .sum();
        tracing::info!(group = %self.group, partitions = drained.len(), unfinished, "draining partitions");
        let mut tasks = Vec::new();
        for (_, worker) in &mut drained {
            worker.revoked.cancel();
            worker.lanes.clear();
            tasks.append(&mut worker.tasks);
        }
        let deadline = self.tuning.drain_deadline();
        let in_time = self.runtime.block_on(async {
            tokio::time::timeout(deadline, async {
                for task in &mut tasks {
                    let _ = task.await;
                }
            })
            .await
            .is_ok()
        });
        if !in_time {
            tracing::warn!(group = %self.group, ?deadline, "drain deadline passed; abandoning records in flight to the next owner");
            metrics::consumer_abandoned(
                &self.group,
                tasks.iter().filter(|t| !t.is_finished()).count(),
            );
            for (_, worker) in &drained {
                worker.abandon.cancel();
            }
            // Only tasks that have not been awaited to completion may be awaited again.
            tasks.retain(|task| !task.is_finished());
            self.runtime.block_on(futures::future::join_all(tasks));
        }
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), worker) in &drained {
            if let Some(next) = lock(&worker.tracker).committable() {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(next));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        if let Err(e) = consumer.store_offsets(&tpl) {
            tracing::warn!(group = %self.group, error = %e, "storing drained offsets failed");
        }
        // Asynchronous on purpose: a synchronous commit waits without limit when the
        // coordinator is unreachable. The request is queued before this member's rejoin on
        // the same coordinator connection, so it is applied before the partitions' next
        // owner fetches its starting offsets; librdkafka also commits stored offsets itself
        // when it unassigns or closes.
        match consumer.commit(&tpl, CommitMode::Async) {
            Ok(()) => {
                tracing::info!(group = %self.group, partitions = tpl.count(), "committing drained partitions")
            }
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "commit after drain failed; the next owner may redo finished records")
            }
        }
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

    /// Returns false if the record was abandoned (drain deadline) before it finished.
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

struct Ctx<H> {
    shared: Arc<Shared<H>>,
}

impl<H: Handler> ClientContext for Ctx<H> {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::log_to_tracing(level, fac, log_message);
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(group = %self.shared.group, error = %error, reason, "kafka client error");
    }
}

impl<H: Handler> ConsumerContext for Ctx<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions: Vec<TopicPartition> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_owned(), e.partition()))
                .collect();
            tracing::info!(group = %self.shared.group, revoked = partitions.len(), "partitions revoked");
            self.shared.drain(consumer, &partitions);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(group = %self.shared.group, assigned = tpl.count(), "partitions assigned");
            self.shared
                .assignment_changed
                .store(true, Ordering::Release);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(group = %self.shared.group, error = %e, "offset commit failed");
        }
    }
}

/// Runs a consumer group member until `shutdown` is cancelled, then drains and leaves the
/// group. Returns only after the last commit.
pub async fn run<H: Handler>(
    config: &KafkaConfig,
    spec: ConsumerSpec,
    handler: Arc<H>,
    shutdown: CancellationToken,
) -> Result<(), ConsumerError> {
    let tuning = config.consumer.clone();
    let mut client = base_client_config(config, &spec.client_id).map_err(ClientSetupError::from)?;
    client
        .set("group.id", &spec.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.commit.interval.ms",
            tuning.auto_commit_interval_ms.to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", tuning.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            tuning.heartbeat_interval_ms.to_string(),
        )
        .set(
            "max.poll.interval.ms",
            tuning.max_poll_interval_ms.to_string(),
        );
    for (key, value) in &tuning.properties {
        client.set(key, value);
    }
    let shared = Arc::new(Shared {
        group: spec.group_id.clone(),
        handler,
        tuning,
        runtime: tokio::runtime::Handle::current(),
        workers: Mutex::default(),
        in_flight: Arc::default(),
        assignment_changed: AtomicBool::new(false),
    });
    let consumer: BaseConsumer<Ctx<H>> = client
        .create_with_context(Ctx {
            shared: Arc::clone(&shared),
        })
        .map_err(|source| ClientSetupError::Create {
            kind: "consumer",
            source,
        })?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|source| ConsumerError::Subscribe {
            group: spec.group_id.clone(),
            topics: spec.topics.clone(),
            source,
        })?;
    tracing::info!(group = %spec.group_id, topics = ?spec.topics, "consumer started");

    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread_name = format!("poll-{}", spec.group_id);
    std::thread::Builder::new()
        .name(thread_name.chars().take(15).collect())
        .spawn(move || {
            // The handler and its resources (connection pools) are dropped on this thread
            // with the consumer's context; some need the runtime to close.
            let _runtime = shared.runtime.enter();
            poll_loop(&consumer, &shared, &shutdown);
            // Dropping the consumer leaves the group (its revoke callback finds nothing left
            // to drain) and commits what librdkafka still holds.
            drop(consumer);
            drop(shared);
            let _ = done_tx.send(());
        })
        .map_err(|_| ConsumerError::PollThread(spec.group_id.clone()))?;
    done_rx
        .await
        .map_err(|_| ConsumerError::PollThread(spec.group_id.clone()))?;
    tracing::info!(group = %spec.group_id, "consumer stopped");
    Ok(())
}

const POLL_INTERVAL: Duration = Duration::from_millis(100);

fn poll_loop<H: Handler>(
    consumer: &BaseConsumer<Ctx<H>>,
    shared: &Shared<H>,
    shutdown: &CancellationToken,
) {
    let max_in_flight = shared.tuning.max_in_flight.max(1);
    let mut paused = false;
    while !shutdown.is_cancelled() {
        shared.store_finished(consumer);
        let in_flight = shared.in_flight.load(Ordering::Acquire);
        metrics::consumer_in_flight(&shared.group, in_flight);
        if shared.assignment_changed.swap(false, Ordering::AcqRel) {
            // A new assignment starts unpaused.
            paused = false;
        }
        if !paused && in_flight >= max_in_flight {
            paused = set_paused(consumer, &shared.group, true);
        } else if paused && in_flight <= max_in_flight / 2 {
            paused = !set_paused(consumer, &shared.group, false);
        }
        match consumer.poll(POLL_INTERVAL) {
            Some(Ok(message)) => {
                metrics::consumer_received(&shared.group);
                shared.dispatch(message.detach());
            }
            Some(Err(e)) => {
                tracing::warn!(group = %shared.group, error = %e, "consumer poll error")
            }
            None => {}
        }
    }
    let assigned: Vec<TopicPartition> = lock(&shared.workers).keys().cloned().collect();
    shared.drain(consumer, &assigned);
}

/// Pauses or resumes every assigned partition; returns whether it took effect.
fn set_paused<C: ConsumerContext>(consumer: &BaseConsumer<C>, group: &str, pause: bool) -> bool {
    let result = consumer.assignment().and_then(|assignment| {
        if pause {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        }
    });
    match result {
        Ok(()) => {
            tracing::debug!(
                group,
                pause,
                "in-flight limit: fetching {}",
                if pause { "paused" } else { "resumed" }
            );
            true
        }
        Err(e) => {
            tracing::warn!(group, error = %e, "pause/resume failed");
            false
        }
    }
}
