//! The idempotent producer every role writes with (acks=all, enable.idempotence=true, one
//! request in flight per broker).
//! `producer_properties` override both; against the embedded Tansu broker Herald keeps one
//! request in flight per connection instead of idempotence (see `herald_testkit::tansu`).

use std::time::Duration;

use futures::FutureExt;
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};

use super::{ClientSetupError, base_client_config};
use crate::config::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("producing to {topic} failed: {source}")]
    Kafka { topic: String, source: KafkaError },
    #[error("producer for {topic} shut down before the broker acknowledged")]
    Cancelled { topic: String },
    #[error(
        "Kafka's authorizer denies Write on topic {topic} to {principal}: grant it (`herald acls` lists every ACL a role needs)"
    )]
    Denied { topic: String, principal: String },
}

impl ProduceError {
    fn failed(topic: String, source: KafkaError, principal: &str) -> Self {
        if super::acl::is_denial(&source) {
            Self::Denied { topic, principal: principal.to_owned() }
        } else {
            Self::Kafka { topic, source }
        }
    }
}

/// Routes the producer's librdkafka log lines into `tracing` (the default context hands
/// them to the `log` crate, which no subscriber here reads: they would be lost).
#[derive(Clone, Copy, Debug, Default)]
pub struct LogContext;

impl ClientContext for LogContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        super::log_to_tracing(level, fac, log_message);
    }
}

impl rdkafka::consumer::ConsumerContext for LogContext {}

#[derive(Clone)]
pub struct Producer {
    inner: FutureProducer<LogContext>,
    /// Whom the cluster sees, for naming a denial.
    principal: std::sync::Arc<str>,
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Producer").finish_non_exhaustive()
    }
}

/// A record accepted into the producer's queue; await it for the broker's acknowledgement.
pub struct Ack {
    topic: String,
    principal: std::sync::Arc<str>,
    delivery: rdkafka::producer::DeliveryFuture,
}

impl std::fmt::Debug for Ack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ack").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl Ack {
    /// Waits for acks=all from the broker; returns the (partition, offset) written.
    pub async fn wait(self) -> Result<(i32, i64), ProduceError> {
        let result = self.delivery.await;
        crate::metrics::produced(&self.topic, matches!(result, Ok(Ok(_))));
        match result {
            Ok(Ok(delivery)) => Ok((delivery.partition, delivery.offset)),
            Ok(Err((source, _))) => Err(ProduceError::failed(self.topic, source, &self.principal)),
            Err(_) => Err(ProduceError::Cancelled { topic: self.topic }),
        }
    }
}

/// While librdkafka's local queue is full, wait this long before offering the record again:
/// a full queue is backpressure, not an error.
const QUEUE_FULL_BACKOFF: Duration = Duration::from_millis(10);

impl Producer {
    pub fn new(config: &KafkaConfig, client_id: &str) -> Result<Self, ClientSetupError> {
        Self::with(config, client_id, &[])
    }

    /// Like [`Producer::new`], with librdkafka properties of its own (`partitioner`) before
    /// `producer_properties`.
    pub fn with(
        config: &KafkaConfig,
        client_id: &str,
        own: &[(&str, &str)],
    ) -> Result<Self, ClientSetupError> {
        let mut client = base_client_config(config, client_id)?;
        for (key, value) in own {
            client.set(*key, *value);
        }
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // One request in flight per broker: with more, librdkafka loses records. When
            // a request fails with "not leader" (the broker is about to lead the partition:
            // a new topic, an election) and the next one, already sent, succeeds, librdkafka
            // counts the first as written ("implicitly acked") although nothing was; the
            // broker took the second because it did not know this producer yet (a new
            // producer id, after every start, may begin at any sequence number). Seen in
            // `herald chaos --faults brokers`: acknowledged requests missing from the log.
            .set("max.in.flight.requests.per.connection", "1")
            .set("linger.ms", "5")
            .set("compression.type", "lz4");
        for (key, value) in &config.producer_properties {
            client.set(key, value);
        }
        let inner = client
            .create_with_context(LogContext)
            .map_err(|source| ClientSetupError::Create { kind: "producer", source })?;
        Ok(Self { inner, principal: super::acl::principal(config).into() })
    }

    /// Puts a record into the producer's queue, waiting while the queue is full. Records
    /// enqueued one after another keep their order per partition. The returned [`Ack`]
    /// resolves when the broker acknowledged (or definitively refused) the record.
    pub async fn enqueue(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<Ack, ProduceError> {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(payload);
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(headers) = headers {
            record = record.headers(headers);
        }
        self.offer(topic, record).await
    }

    /// Offers `record` to the queue until it takes it.
    async fn offer(
        &self,
        topic: &str,
        mut record: FutureRecord<'_, [u8], [u8]>,
    ) -> Result<Ack, ProduceError> {
        loop {
            match self.inner.send_result(record) {
                Ok(delivery) => {
                    let principal = std::sync::Arc::clone(&self.principal);
                    return Ok(Ack { topic: topic.to_owned(), principal, delivery });
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    record = returned;
                    crate::metrics::producer_queue_full(topic);
                    tokio::time::sleep(QUEUE_FULL_BACKOFF).await;
                }
                Err((source, _)) => {
                    return Err(ProduceError::failed(topic.to_owned(), source, &self.principal));
                }
            }
        }
    }

    /// Puts a record without a value (a tombstone: on a compacted topic, the key removed)
    /// into the producer's queue, as [`Producer::enqueue`] does.
    pub async fn enqueue_tombstone(&self, topic: &str, key: &[u8]) -> Result<Ack, ProduceError> {
        self.offer(topic, FutureRecord::<[u8], [u8]>::to(topic).key(key)).await
    }

    /// Enqueue and wait for the acknowledgement.
    pub async fn send(
        &self,
        topic: &str,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<OwnedHeaders>,
    ) -> Result<(i32, i64), ProduceError> {
        self.enqueue(topic, key, payload, headers).await?.wait().await
    }

    /// Waits for every queued record to be acknowledged, up to `timeout`.
    pub async fn flush(&self, timeout: Duration) {
        let inner = self.inner.clone();
        // flush blocks the calling thread; keep it off the runtime's workers.
        let flushed = tokio::task::spawn_blocking(move || inner.flush(timeout)).map(|r| r.ok());
        if let Some(Err(e)) = flushed.await {
            tracing::warn!(error = %e, "producer flush did not complete");
        }
    }

    pub fn client(&self) -> &FutureProducer<LogContext> {
        &self.inner
    }
}
