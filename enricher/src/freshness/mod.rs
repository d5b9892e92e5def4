//! Read-your-writes for the directory: a request is enriched with every directory change
//! written before it, on every enricher process, however many there are and whichever of
//! them applies which partition of the changes.
//!
//! The protocol, per process:
//! 1. The applier ([`crate::changes::apply`]) is one consumer group on the directory topics;
//!    after it applied a prefix of a partition, it says so: in the store (for every process
//!    and the directory API) and to its own process at once.
//! 2. The tail ([`tail`]) reads every partition of the directory topics, keys only, from
//!    where the applier had got to when the process started. A change it reads stays
//!    *pending* for its subject (a user, a template) until the applier's progress passes its
//!    offset; then the subject is dropped from this process's cache ([`Forget`]) and stops
//!    being pending.
//! 3. Before a request's directory reads, [`Freshness::ready`] asks the brokers where the
//!    directory topics end, by a question asked after the request arrived ([`ends`]); waits
//!    until the tail has read that far; then waits while the request's user or template has
//!    a pending change. Any change acknowledged before the request lies below those ends, so
//!    it is applied, and out of the cache, before the request reads.
//!
//! So a send made after a directory write was acknowledged sees it, without waiting out a
//! cache TTL and whatever partitioner wrote it; a request whose user changed nothing waits
//! only for the question, which the requests waiting at once share.

mod ends;
pub mod ledger;
mod tail;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use herald_runtime::KafkaConfig;
use herald_runtime::metrics;
use prometheus::{HistogramVec, IntGaugeVec};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::cache::CachedDirectory;
use crate::directory::{Directory, DirectoryError};
pub use ledger::{Ledger, Partition, Subject};

/// How long a request waits for the changes written before it, before its handling fails
/// (and is tried again): the applier is down, or far behind.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The group ids (after `kafka.group_prefix`) of the tail's reader and of the client asking
/// where partitions end: both are assigned partitions and join nothing.
pub const TAIL_GROUP: &str = "enricher-tail";
pub const ENDS_GROUP: &str = "enricher-ends";
/// How often the store's progress is read while a request waits for a pending change, while
/// changes are pending, and otherwise.
const POLL_WAITED: Duration = Duration::from_millis(2);
const POLL_PENDING: Duration = Duration::from_millis(100);
const POLL_IDLE: Duration = Duration::from_secs(1);

struct FreshnessMetrics {
    unapplied: IntGaugeVec,
    ready_seconds: HistogramVec,
}

fn freshness_metrics() -> &'static FreshnessMetrics {
    static METRICS: OnceLock<FreshnessMetrics> = OnceLock::new();
    METRICS.get_or_init(|| FreshnessMetrics {
        unapplied: metrics::gauge_vec(
            "herald_directory_unapplied",
            "Directory changes this enricher read and the applier has not applied yet.",
            &[],
        ),
        ready_seconds: metrics::histogram_vec(
            "herald_directory_ready_seconds",
            "How long a request waited for the directory changes written before it.",
            &["outcome"],
        ),
    })
}

pub(crate) fn define_metrics() {
    let _ = freshness_metrics();
}

#[derive(Debug, thiserror::Error)]
pub enum NotFresh {
    #[error("cannot learn where the directory topics end: {0}")]
    Ends(String),
    #[error(
        "the directory changes written before this request were not applied within {0:?} (is an enricher applying herald.directory.changes?)"
    )]
    Timeout(Duration),
    #[error("the enricher is stopping")]
    Stopped,
}

#[derive(Debug, thiserror::Error)]
pub enum FreshnessSetupError {
    #[error(transparent)]
    Kafka(#[from] herald_runtime::kafka::ClientSetupError),
    #[error("the directory topics: {0}")]
    Topics(String),
    #[error("reading how far the directory is applied: {0}")]
    Store(#[from] DirectoryError),
}

/// What the tail, the applier and the store tell the bookkeeping, in order.
#[derive(Debug)]
pub(crate) enum Event {
    Started(Partition, i64),
    Read(Partition, i64, Subject),
    Moved(Partition, i64),
    Applied(Partition, i64),
}

/// Drops a subject from a cache.
pub trait Forget: Send + Sync + 'static {
    fn forget(&self, subject: &Subject) -> impl Future<Output = ()> + Send;
}

impl<D: Directory> Forget for CachedDirectory<D> {
    async fn forget(&self, subject: &Subject) {
        match subject {
            Subject::User(id) => self.invalidate_user(id).await,
            Subject::Template(id) => self.invalidate_template(id).await,
        }
    }
}

struct Shared {
    ledger: Mutex<Ledger>,
    version: watch::Sender<u64>,
    events: mpsc::UnboundedSender<Event>,
    ends: Arc<ends::Ends>,
    /// Requests waiting for a pending change: the store's progress is read often meanwhile.
    waiting: AtomicUsize,
    unapplied: Arc<AtomicUsize>,
    topics: tail::Topics,
}

/// Read-your-writes for one enricher process; cheap to clone.
#[derive(Clone)]
pub struct Freshness {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Freshness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Freshness").finish_non_exhaustive()
    }
}

/// Counts a request waiting for a pending change while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Freshness {
    /// Starts the tail, the question to the brokers and the bookkeeping, until `shutdown`.
    /// Fails when the directory topics are missing: nothing could be fresh.
    pub async fn start<D: Directory>(
        kafka: &KafkaConfig,
        cache: Arc<CachedDirectory<D>>,
        shutdown: CancellationToken,
    ) -> Result<Self, FreshnessSetupError> {
        define_metrics();
        let topics = kafka.topics();
        let topics = tail::Topics {
            changes: Arc::from(topics.directory_changes()),
            templates: Arc::from(topics.templates()),
        };
        let consumer = Arc::new(herald_runtime::kafka::reader(kafka, &kafka.group(TAIL_GROUP))?);
        let known = {
            let (consumer, topics) = (Arc::clone(&consumer), topics.clone());
            tokio::task::spawn_blocking(move || tail::partitions(&consumer, &topics))
                .await
                .map_err(|e| FreshnessSetupError::Topics(e.to_string()))?
                .map_err(FreshnessSetupError::Topics)?
        };
        let applied: HashMap<Partition, i64> = cache
            .inner()
            .progress()
            .await?
            .into_iter()
            .filter_map(|(topic, partition, next)| {
                known
                    .iter()
                    .find(|(t, p)| **t == *topic && *p == partition)
                    .map(|p| (p.clone(), next))
            })
            .collect();
        // A client of its own: a broker answers one connection's requests in order, so a
        // question sent behind the tail's waiting fetch would wait out the fetch too.
        let asking = herald_runtime::kafka::reader(kafka, &kafka.group(ENDS_GROUP))?;
        let ends = ends::Ends::new(Arc::new(asking));
        ends.set_partitions(known.clone());
        let (events, received) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            ledger: Mutex::default(),
            version: watch::Sender::new(0),
            events: events.clone(),
            ends: Arc::clone(&ends),
            waiting: AtomicUsize::new(0),
            unapplied: Arc::default(),
            topics: topics.clone(),
        });
        let runtime = tokio::runtime::Handle::current();
        let tail = tail::Tail {
            consumer,
            topics,
            ends: Arc::clone(&ends),
            events,
            unapplied: Arc::clone(&shared.unapplied),
            applied,
        };
        {
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("directory-tail".into())
                .spawn(move || tail.run(known, &shutdown))
                .map_err(|e| FreshnessSetupError::Topics(e.to_string()))?;
        }
        {
            let shutdown = shutdown.clone();
            std::thread::Builder::new()
                .name("directory-ends".into())
                .spawn(move || ends.serve(&runtime, &shutdown))
                .map_err(|e| FreshnessSetupError::Topics(e.to_string()))?;
        }
        tokio::spawn(keep(Arc::clone(&shared), received, cache, shutdown));
        Ok(Self { shared })
    }

    /// The local applier applied every record of `topic`'s `partition` before `next`.
    pub fn applied(&self, topic: &str, partition: i32, next: i64) {
        if let Some(topic) = self.shared.topics.named(topic) {
            let _ = self.shared.events.send(Event::Applied((topic, partition), next));
        }
    }

    /// Waits until every change to `subjects` written before this call is applied and out of
    /// this process's cache.
    pub async fn ready(&self, subjects: &[Subject]) -> Result<(), NotFresh> {
        if subjects.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let result = tokio::time::timeout(READY_TIMEOUT, self.wait(subjects)).await;
        let result = result.unwrap_or(Err(NotFresh::Timeout(READY_TIMEOUT)));
        let outcome = if result.is_ok() { "ready" } else { "failed" };
        freshness_metrics()
            .ready_seconds
            .with_label_values(&[outcome])
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn wait(&self, subjects: &[Subject]) -> Result<(), NotFresh> {
        let ends = self.shared.ends.after_now().await?;
        let mut version = self.shared.version.subscribe();
        let mut waiting = None;
        loop {
            version.borrow_and_update();
            {
                let ledger = self.shared.ledger.lock().unwrap_or_else(|p| p.into_inner());
                let pending = subjects.iter().any(|s| ledger.is_pending(s));
                if ledger.caught_up(&ends) && !pending {
                    return Ok(());
                }
                if pending && waiting.is_none() {
                    self.shared.waiting.fetch_add(1, Ordering::AcqRel);
                    waiting = Some(Waiting(&self.shared.waiting));
                }
            }
            version.changed().await.map_err(|_| NotFresh::Stopped)?;
        }
    }
}

/// The bookkeeping: applies the tail's, the applier's and the store's news in order, and
/// drops each settled subject from the cache before it stops being pending.
async fn keep<D: Directory>(
    shared: Arc<Shared>,
    mut received: mpsc::UnboundedReceiver<Event>,
    cache: Arc<CachedDirectory<D>>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(1024);
    loop {
        let poll = if shared.waiting.load(Ordering::Acquire) > 0 {
            POLL_WAITED
        } else if shared.unapplied.load(Ordering::Acquire) > 0 {
            POLL_PENDING
        } else {
            POLL_IDLE
        };
        tokio::select! {
            () = shutdown.cancelled() => return,
            count = received.recv_many(&mut batch, 1024) => {
                if count == 0 {
                    return;
                }
            }
            () = tokio::time::sleep(poll) => match cache.inner().progress().await {
                Ok(rows) => {
                    for (topic, partition, next) in rows {
                        if let Some(topic) = shared.topics.named(&topic) {
                            batch.push(Event::Applied((topic, partition), next));
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reading how far the directory is applied"),
            },
        }
        for event in batch.drain(..) {
            take(&shared, &*cache, event).await;
        }
        let unapplied = shared.ledger.lock().unwrap_or_else(|p| p.into_inner()).unapplied_count();
        shared.unapplied.store(unapplied, Ordering::Release);
        freshness_metrics()
            .unapplied
            .with_label_values::<&str>(&[])
            .set(i64::try_from(unapplied).unwrap_or(i64::MAX));
        shared.version.send_modify(|v| *v += 1);
    }
}

/// One event; what it settles leaves the cache first.
async fn take<F: Forget>(shared: &Shared, cache: &F, event: Event) {
    let lock = || shared.ledger.lock().unwrap_or_else(|p| p.into_inner());
    match event {
        Event::Started(partition, next) => {
            let mut ledger = lock();
            ledger.start(partition.clone(), next);
            ledger.settle(&partition, next);
        }
        Event::Read(partition, offset, subject) => {
            if lock().is_applied(&partition, offset) {
                cache.forget(&subject).await;
            }
            lock().read(&partition, offset, subject);
        }
        Event::Moved(partition, next) => lock().moved_to(&partition, next),
        Event::Applied(partition, next) => {
            let settled = lock().settled_by(&partition, next);
            for subject in &settled {
                cache.forget(subject).await;
            }
            lock().settle(&partition, next);
        }
    }
}
