//! Where the directory topics end, asked of the brokers (one ListOffsets request per
//! broker, every partition at once). A fence needs an answer to a question asked after its
//! request arrived, so that every change acknowledged before that request lies below it;
//! the fences waiting at one time share one question.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_runtime::kafka::producer::LogContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::NotFresh;
use super::ledger::Partition;

/// How long one question may take before it counts as failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

type Answer = (u64, Result<Arc<HashMap<Partition, i64>>, String>);

pub(crate) struct Ends {
    consumer: Arc<BaseConsumer<LogContext>>,
    partitions: Mutex<Vec<Partition>>,
    /// The number of the latest question asked (or about to be).
    asked: AtomicU64,
    answers: watch::Sender<Answer>,
    demand: Notify,
}

impl Ends {
    pub(crate) fn new(consumer: Arc<BaseConsumer<LogContext>>) -> Arc<Self> {
        Arc::new(Self {
            consumer,
            partitions: Mutex::default(),
            asked: AtomicU64::new(0),
            answers: watch::Sender::new((0, Err("not asked yet".into()))),
            demand: Notify::new(),
        })
    }

    pub(crate) fn set_partitions(&self, partitions: Vec<Partition>) {
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = partitions;
    }

    /// Where every partition ends, by a question asked after this call began.
    pub(crate) async fn after_now(&self) -> Result<Arc<HashMap<Partition, i64>>, NotFresh> {
        // A question numbered above the latest one now is asked after this point, and so is
        // its request to the brokers.
        let wanted = self.asked.load(Ordering::SeqCst) + 1;
        let mut answers = self.answers.subscribe();
        loop {
            {
                let (number, answer) = &*answers.borrow_and_update();
                if *number >= wanted {
                    return answer.clone().map_err(NotFresh::Ends);
                }
            }
            self.demand.notify_one();
            answers.changed().await.map_err(|_| NotFresh::Stopped)?;
        }
    }

    /// Asks whenever someone waits, until `shutdown`; blocks its thread.
    pub(crate) fn serve(&self, runtime: &tokio::runtime::Handle, shutdown: &CancellationToken) {
        loop {
            let asked = runtime.block_on(async {
                tokio::select! {
                    () = shutdown.cancelled() => false,
                    () = self.demand.notified() => true,
                }
            });
            if !asked {
                return;
            }
            let number = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
            let partitions = self.partitions.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let answer = query(&self.consumer, &partitions).map(Arc::new);
            if let Err(reason) = &answer {
                tracing::warn!(reason, "cannot learn where the directory topics end");
            }
            drop(self.answers.send_replace((number, answer)));
        }
    }
}

fn query(
    consumer: &BaseConsumer<LogContext>,
    partitions: &[Partition],
) -> Result<HashMap<Partition, i64>, String> {
    if partitions.is_empty() {
        return Err("no partition of the directory topics is known".into());
    }
    let mut asked = TopicPartitionList::new();
    for (topic, partition) in partitions {
        // A timestamp of -1 (Offset::End) asks for the latest offset: the end of the log
        // as a read_committed reader sees it.
        asked.add_partition_offset(topic, *partition, Offset::End).map_err(|e| e.to_string())?;
    }
    let answered = consumer.offsets_for_times(asked, QUERY_TIMEOUT).map_err(|e| e.to_string())?;
    let mut ends = HashMap::with_capacity(partitions.len());
    for element in answered.elements() {
        if let Err(e) = element.error() {
            return Err(format!("{} [{}]: {e}", element.topic(), element.partition()));
        }
        let end = match element.offset() {
            Offset::Offset(end) => end,
            // No record yet: nothing to wait for.
            Offset::End | Offset::Beginning | Offset::Invalid => 0,
            other => {
                return Err(format!("{} [{}]: {other:?}", element.topic(), element.partition()));
            }
        };
        let partition = partitions
            .iter()
            .find(|(t, p)| &**t == element.topic() && *p == element.partition())
            .cloned()
            .ok_or_else(|| {
                format!("an answer for {} [{}], not asked", element.topic(), element.partition())
            })?;
        ends.insert(partition, end);
    }
    Ok(ends)
}
