//! The poll thread: fetches, admits records through the due gate, dispatches them to the
//! partition workers, stores finished offsets, pauses and resumes partitions, and serves
//! librdkafka's rebalance callbacks (which run inside `poll`, on this thread).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use super::due::{Admission, DueGate};
use super::partition::Partitions;
use super::{Handler, TopicPartition, lock};
use crate::metrics;

pub(super) struct Shared<H> {
    pub(super) group: String,
    pub(super) max_in_flight: usize,
    pub(super) partitions: Partitions<H>,
    pub(super) gate: Mutex<DueGate>,
    pub(super) assignment_changed: AtomicBool,
    /// Partitions revoked since the poll loop last looked: a batch being gathered may hold
    /// records of them taken before the revocation. Only the poll thread touches it
    /// (rebalance callbacks run inside its `poll`).
    pub(super) revoked: Mutex<HashSet<TopicPartition>>,
}

pub(super) struct Ctx<H> {
    pub(super) shared: std::sync::Arc<Shared<H>>,
}

impl<H: Handler> Shared<H> {
    /// Drains `partitions` and commits what finished.
    fn revoke(&self, consumer: &BaseConsumer<Ctx<H>>, partitions: &[TopicPartition]) {
        lock(&self.revoked).extend(partitions.iter().cloned());
        lock(&self.gate).forget(partitions);
        let tpl = self.partitions.drain(partitions);
        if tpl.count() == 0 {
            return;
        }
        match consumer.store_offsets(&tpl) {
            Ok(()) => self.tell_finished(&tpl),
            Err(e) => {
                tracing::warn!(group = %self.group, error = %e, "storing drained offsets failed")
            }
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

impl<H: Handler> Shared<H> {
    /// Tells the handler how far each partition of `stored` is finished.
    fn tell_finished(&self, stored: &TopicPartitionList) {
        for element in stored.elements() {
            if let rdkafka::Offset::Offset(next) = element.offset() {
                self.partitions.handler().finished_before(
                    element.topic(),
                    element.partition(),
                    next,
                );
            }
        }
    }
}

impl<H: Handler> ClientContext for Ctx<H> {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        crate::kafka::log_to_tracing(level, fac, log_message);
    }
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(group = %self.shared.group, error = %error, reason, "kafka client error");
    }

    /// `statistics.interval.ms`: per-partition lag as librdkafka sees it (log end minus this
    /// member's position), for dashboards and lag-based autoscaling.
    fn stats(&self, statistics: rdkafka::Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // -1 is librdkafka's internal unassigned partition.
                if *partition < 0 {
                    continue;
                }
                let owned = p.fetch_state == "active";
                let lag = (owned && p.consumer_lag >= 0).then_some(p.consumer_lag);
                metrics::consumer_lag(&self.shared.group, topic, *partition, lag);
            }
        }
    }
}

impl<H: Handler> ConsumerContext for Ctx<H> {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let partitions: Vec<TopicPartition> =
                tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            tracing::info!(group = %self.shared.group, revoked = partitions.len(), "partitions revoked");
            self.shared.revoke(consumer, &partitions);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            tracing::info!(group = %self.shared.group, assigned = tpl.count(), "partitions assigned");
            self.shared.assignment_changed.store(true, Ordering::Release);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, _offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(group = %self.shared.group, error = %e, "offset commit failed");
        }
    }
}

const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// How often the poll loop logs where it stands (debug level).
const STATUS_EVERY: Duration = Duration::from_secs(10);

/// Which partitions are paused and why: the in-flight limit pauses all of them, the due gate
/// pauses the ones whose head record is not due. A partition runs only when neither holds it.
struct Pauses {
    over_limit: bool,
    gated: HashSet<TopicPartition>,
}

impl Pauses {
    fn apply<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>, group: &str) {
        let Ok(assignment) = consumer.assignment() else {
            return;
        };
        let mut pause = TopicPartitionList::new();
        let mut resume = TopicPartitionList::new();
        for element in assignment.elements() {
            let tp = (element.topic().to_owned(), element.partition());
            let list =
                if self.over_limit || self.gated.contains(&tp) { &mut pause } else { &mut resume };
            let _ = list.add_partition(element.topic(), element.partition());
        }
        let results = [
            (pause.count() > 0).then(|| consumer.pause(&pause)),
            (resume.count() > 0).then(|| consumer.resume(&resume)),
        ];
        for result in results.into_iter().flatten() {
            if let Err(e) = result {
                tracing::warn!(group, error = %e, "pause/resume failed");
            }
        }
    }
}

/// Polls until `shutdown`, or until the cluster's authorizer refuses the group or one of its
/// topics (returned: no retry cures it, the role stops naming it).
pub(super) fn poll_loop<H: Handler>(
    consumer: &BaseConsumer<Ctx<H>>,
    shared: &Shared<H>,
    shutdown: &CancellationToken,
) -> Option<rdkafka::error::KafkaError> {
    let max_in_flight = shared.max_in_flight;
    let mut pauses = Pauses { over_limit: false, gated: HashSet::new() };
    let mut received: u64 = 0;
    let mut last_report = std::time::Instant::now();
    let mut denied = None;
    while !shutdown.is_cancelled() {
        if last_report.elapsed() >= STATUS_EVERY {
            last_report = std::time::Instant::now();
            tracing::debug!(
                group = %shared.group, received, in_flight = shared.partitions.in_flight(),
                held = lock(&shared.gate).held_count(), gated = pauses.gated.len(), over_limit = pauses.over_limit,
                "consumer status"
            );
        }
        let mut changed = false;
        if shared.assignment_changed.swap(false, Ordering::AcqRel) {
            // Revoked partitions left the gate; a new assignment starts from what is known.
            pauses.gated.retain(|tp| lock(&shared.gate).is_holding(tp));
            changed = true;
        }
        let (due, released) = lock(&shared.gate).release(herald_schemas::now_millis());
        shared.partitions.dispatch(due);
        for tp in released {
            changed |= pauses.gated.remove(&tp);
        }

        let tpl = shared.partitions.finished_offsets();
        if tpl.count() > 0 {
            match consumer.store_offsets(&tpl) {
                Ok(()) => shared.tell_finished(&tpl),
                Err(e) => {
                    tracing::warn!(group = %shared.group, error = %e, "storing offsets failed")
                }
            }
        }
        let in_flight = shared.partitions.in_flight();
        metrics::consumer_in_flight(&shared.group, in_flight);
        metrics::consumer_held(&shared.group, lock(&shared.gate).held_count());
        if !pauses.over_limit && in_flight >= max_in_flight {
            pauses.over_limit = true;
            changed = true;
        } else if pauses.over_limit && in_flight <= max_in_flight / 2 {
            pauses.over_limit = false;
            changed = true;
        }
        if changed {
            pauses.apply(consumer, &shared.group);
        }

        let most = BATCH.min(max_in_flight.saturating_sub(in_flight).max(1));
        let batch = match gather(consumer, shared, most) {
            Ok(batch) => batch,
            Err(denial) => {
                denied = Some(denial);
                break;
            }
        };
        if batch.is_empty() {
            continue;
        }
        received += batch.len() as u64;
        metrics::consumer_received(&shared.group, batch.len());
        let now = herald_schemas::now_millis();
        let mut admitted = Vec::with_capacity(batch.len());
        let mut gated = false;
        {
            let mut gate = lock(&shared.gate);
            for message in batch {
                match gate.admit(message, now) {
                    Admission::Dispatch(message) => admitted.push(message),
                    Admission::HeldPause(tp) => {
                        pauses.gated.insert(tp);
                        gated = true;
                    }
                    Admission::Held => {}
                }
            }
        }
        shared.partitions.dispatch(admitted);
        if gated {
            pauses.apply(consumer, &shared.group);
        }
    }
    let mut assigned = shared.partitions.with_work();
    if let Ok(assignment) = consumer.assignment() {
        assigned
            .extend(assignment.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
    }
    shared.revoke(consumer, &assigned);
    denied
}

/// Records taken from librdkafka in one pass of the poll loop, at most.
const BATCH: usize = 512;

/// Waits up to [`POLL_INTERVAL`] for a record, then takes what else librdkafka holds, up to
/// `most`, without waiting: the loop's bookkeeping (offsets, gate, pauses) then runs once per
/// batch. Records of a partition revoked while the batch was gathered, taken before the
/// revocation, are dropped: the partition's next owner (or this member again, from the
/// committed offset) reads them. Records taken after it are current. An authorizer's
/// refusal ends the gathering with the error.
fn gather<H: Handler>(
    consumer: &BaseConsumer<Ctx<H>>,
    shared: &Shared<H>,
    most: usize,
) -> Result<Vec<OwnedMessage>, rdkafka::error::KafkaError> {
    let mut batch: Vec<OwnedMessage> = Vec::new();
    let mut wait = POLL_INTERVAL;
    lock(&shared.revoked).clear();
    while batch.len() < most {
        let polled = consumer.poll(wait);
        {
            let mut revoked = lock(&shared.revoked);
            if !revoked.is_empty() {
                batch.retain(|m| !revoked.contains(&(m.topic().to_owned(), m.partition())));
                revoked.clear();
            }
        }
        match polled {
            Some(Ok(message)) => batch.push(message.detach()),
            Some(Err(e)) if crate::kafka::acl::is_denial(&e) => return Err(e),
            Some(Err(e)) => {
                tracing::warn!(group = %shared.group, error = %e, "consumer poll error");
                break;
            }
            None => break,
        }
        wait = Duration::ZERO;
    }
    Ok(batch)
}
