//! The consumer runtime every role's input runs on.
//!
//! - One poll thread owns the librdkafka consumer: it fetches, dispatches records, stores
//!   offsets and serves rebalance callbacks. Only it ever touches the consumer. It takes
//!   what librdkafka holds in batches, and hands each key queue its records of a batch at
//!   once: its bookkeeping and the key queues' wake-ups are per batch, not per record.
//! - Each assigned partition gets a worker with up to `key_queues_per_partition` key queues; a record
//!   goes to the key queue of its key, so records with one key are handled in order while
//!   different keys proceed concurrently. A handler may split a record into an ordered
//!   start and a wait for its outputs' acknowledgements; a key queue then keeps up to
//!   `pipelined_per_key` of its records waiting while it starts the next.
//! - `enable.auto.offset.store=false`: a record's offset is stored only when it and every
//!   record before it in its partition finished, i.e. its outputs were acknowledged.
//!   librdkafka's auto-commit then commits stored offsets periodically.
//! - Revoked partitions (rebalance) and all partitions (shutdown) are drained: no new
//!   records; records being handled finish under `drain_deadline_ms` (fetched ones not yet
//!   started are left to the next owner), then the finished prefix is stored and committed.
//!   What misses the deadline is abandoned uncommitted and redelivered to the next owner.
//! - In-flight records are bounded by `max_in_flight`; above it, fetching pauses.
//! - A record with a `herald-due-at` header in the future (retry tiers) is held and its
//!   partition paused until it is due; other partitions keep flowing (see [`due`]).

mod due;
mod partition;
mod poll;

use std::pin::Pin;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::OwnedMessage;
use tokio_util::sync::CancellationToken;

use super::{ClientSetupError, base_client_config};
use crate::config::{GroupProtocol, KafkaConfig};
use due::DueGate;
use partition::{KeyQueues, Partitions};
use poll::{Ctx, Shared, poll_loop};

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
        Self { reason: reason.to_string() }
    }
}

/// What is left of a started record: waiting until its outputs are durable.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), HandlerError>> + Send>>;

pub trait Handler: Send + Sync + 'static {
    /// Handles one record. Returns once everything the record causes is durable.
    fn handle(
        &self,
        message: &OwnedMessage,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Does the part of a record that must happen in its key's order (reading state,
    /// deciding, enqueueing outputs) and returns the wait for its outputs to be acknowledged,
    /// or `None` when the record is durable already.
    /// The key queue starts the key's next records while up to `kafka.consumer.pipelined_per_key`
    /// such waits are open, so one busy key is not held to one broker round trip per record. If a
    /// wait fails, the record is handled again with [`Handler::handle`] (its outputs may then
    /// follow those of later records of its key). The default handles the whole record.
    fn start(
        &self,
        message: &OwnedMessage,
    ) -> impl Future<Output = Result<Option<Durable>, HandlerError>> + Send {
        async move { self.handle(message).await.map(|()| None) }
    }

    /// Told on the poll thread, in order, each time a partition's finished prefix is stored:
    /// every record of `topic`'s `partition` before `next_offset` is durable. For a handler
    /// that tells others how far it got; must not block.
    fn finished_before(&self, _topic: &str, _partition: i32, _next_offset: i64) {}
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Setup(#[from] ClientSetupError),
    #[error("group {group} cannot subscribe to {topics:?}: {source}")]
    Subscribe { group: String, topics: Vec<String>, source: rdkafka::error::KafkaError },
    #[error("the poll thread of group {0} failed")]
    PollThread(String),
    #[error(
        "Kafka's authorizer denies {principal} what group {group} needs: Read on the group and on each of {topics:?} ({source}; `herald acls` lists every ACL a role needs)"
    )]
    Denied {
        group: String,
        topics: Vec<String>,
        principal: String,
        source: rdkafka::error::KafkaError,
    },
}

type TopicPartition = (String, i32);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Key queues and the poll thread never leave these structures half-updated.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
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
    crate::metrics::zero_consumer_series(&spec.group_id);
    let mut client = base_client_config(config, &spec.client_id).map_err(ClientSetupError::from)?;
    client
        .set("group.id", &spec.group_id)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.commit.interval.ms", tuning.auto_commit_interval_ms.to_string())
        .set("auto.offset.reset", "earliest")
        .set("max.poll.interval.ms", tuning.max_poll_interval_ms.to_string())
        .set("statistics.interval.ms", tuning.statistics_interval_ms.to_string());
    match tuning.group_protocol {
        GroupProtocol::Classic => {
            if let Some(instance) = tuning.instance_id.as_deref().filter(|i| !i.is_empty()) {
                client.set("group.instance.id", instance);
            }
            client
                .set("session.timeout.ms", tuning.session_timeout_ms.to_string())
                .set("heartbeat.interval.ms", tuning.heartbeat_interval_ms.to_string())
        }
        // The broker owns the session and the assignment; librdkafka refuses both settings.
        GroupProtocol::Consumer => client.set("group.protocol", "consumer"),
    };
    for (key, value) in &tuning.properties {
        client.set(key, value);
    }
    let partitions = Partitions::new(
        spec.group_id.clone(),
        handler,
        KeyQueues {
            per_partition: tuning.key_queues_per_partition,
            pipelined_per_key: tuning.pipelined_per_key,
        },
        tuning.drain_deadline(),
        tokio::runtime::Handle::current(),
    );
    let shared = Arc::new(Shared {
        group: spec.group_id.clone(),
        max_in_flight: tuning.max_in_flight.max(1),
        partitions,
        gate: Mutex::new(DueGate::default()),
        assignment_changed: AtomicBool::new(false),
        revoked: Mutex::default(),
    });
    let consumer: BaseConsumer<Ctx<H>> = client
        .create_with_context(Ctx { shared: Arc::clone(&shared) })
        .map_err(|source| ClientSetupError::Create { kind: "consumer", source })?;
    let topics: Vec<&str> = spec.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|source| ConsumerError::Subscribe {
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
            let _runtime = shared.partitions.runtime().enter();
            let denied = poll_loop(&consumer, &shared, &shutdown);
            if denied.is_some() {
                // Only an ACL cures a refusal: the whole role stops (its other consumers
                // drain) and exits naming it, rather than running with a part missing.
                shutdown.cancel();
            }
            // Dropping the consumer leaves the group (its revoke callback finds nothing left
            // to drain) and commits what librdkafka still holds.
            drop(consumer);
            drop(shared);
            let _ = done_tx.send(denied);
        })
        .map_err(|_| ConsumerError::PollThread(spec.group_id.clone()))?;
    let denied = done_rx.await.map_err(|_| ConsumerError::PollThread(spec.group_id.clone()))?;
    if let Some(source) = denied {
        return Err(ConsumerError::Denied {
            group: spec.group_id,
            topics: spec.topics,
            principal: super::acl::principal(config),
            source,
        });
    }
    tracing::info!(group = %spec.group_id, "consumer stopped");
    Ok(())
}
