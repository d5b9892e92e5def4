//! One channel message in: one provider call, one event out (or a dead letter).

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use herald_runtime::kafka::{
    AvroProducer, DeadLetters, ErrorClass, Handler, HandlerError, Message, OwnedMessage, header_str,
};
use herald_runtime::metrics;
use herald_schemas::{Channel, ChannelMessage, DeliveryEvent, EventKind, headers};
use prometheus::{HistogramVec, IntCounterVec};

use crate::provider::{DeliveryError, Provider};

struct DeliveryMetrics {
    outcomes: IntCounterVec,
    provider_seconds: HistogramVec,
}

fn delivery_metrics() -> &'static DeliveryMetrics {
    static METRICS: OnceLock<DeliveryMetrics> = OnceLock::new();
    METRICS.get_or_init(|| DeliveryMetrics {
        outcomes: metrics::counter_vec(
            "herald_deliveries_total",
            "Provider calls by channel, provider and outcome.",
            &["channel", "provider", "outcome"],
        ),
        provider_seconds: metrics::histogram_vec(
            "herald_provider_seconds",
            "Time from calling a provider to its answer.",
            &["channel", "provider"],
        ),
    })
}

pub(crate) struct DispatchHandler<P> {
    channel: Channel,
    provider: Arc<P>,
    output: AvroProducer,
    dead_letters: DeadLetters,
    events_topic: String,
}

impl<P: Provider> DispatchHandler<P> {
    pub(crate) fn new(
        channel: Channel,
        provider: Arc<P>,
        output: AvroProducer,
        dead_letters: DeadLetters,
        events_topic: String,
    ) -> Self {
        Self {
            channel,
            provider,
            output,
            dead_letters,
            events_topic,
        }
    }

    fn event(&self, message: &ChannelMessage, kind: EventKind, attempt: i32) -> DeliveryEvent {
        let mut event = DeliveryEvent::new(&message.notification_id, kind);
        event.channel = Some(self.channel.as_str().to_owned());
        event.target = Some(message.target.clone());
        event.user_id = message.user_id.clone();
        event.provider = Some(self.provider.name().to_owned());
        event.attempt = attempt;
        event
    }

    async fn emit(&self, event: DeliveryEvent) -> Result<(), HandlerError> {
        self.output
            .enqueue(&self.events_topic, &event.notification_id, &event, None)
            .await
            .map_err(HandlerError::new)?
            .wait()
            .await
            .map(drop)
            .map_err(HandlerError::new)
    }

    async fn poison(&self, record: &OwnedMessage, reason: &str) -> Result<(), HandlerError> {
        self.dead_letters
            .send(record, ErrorClass::Poison, reason)
            .await
            .map_err(HandlerError::new)
    }

    async fn deliver(
        &self,
        record: &OwnedMessage,
        message: ChannelMessage,
    ) -> Result<(), HandlerError> {
        let attempt = header_str(record, headers::ATTEMPT)
            .and_then(|a| a.parse().ok())
            .unwrap_or(1);
        let provider = self.provider.name().to_owned();
        let started = Instant::now();
        let result = self.provider.send(&message).await;
        let m = delivery_metrics();
        m.provider_seconds
            .with_label_values(&[self.channel.as_str(), &provider])
            .observe(started.elapsed().as_secs_f64());
        let outcome = match &result {
            Ok(_) => "sent",
            Err(e) => e.outcome_label(),
        };
        m.outcomes
            .with_label_values(&[self.channel.as_str(), &provider, outcome])
            .inc();

        let event = match result {
            Ok(sent) => {
                let mut event = self.event(&message, EventKind::Sent, attempt);
                if let Some(id) = sent.provider_message_id {
                    event.detail.insert("provider_message_id".into(), id);
                }
                event
            }
            Err(e @ (DeliveryError::Permanent { .. } | DeliveryError::DeadTarget { .. })) => {
                let mut event = self.event(&message, EventKind::Failed, attempt);
                if matches!(e, DeliveryError::DeadTarget { .. }) {
                    event.detail.insert("dead_target".into(), "true".into());
                }
                event.reason = Some(e.to_string());
                event
            }
            Err(e @ DeliveryError::Invalid { .. }) => {
                self.poison(record, &e.to_string()).await?;
                let mut event = self.event(&message, EventKind::DeadLettered, attempt);
                event.reason = Some(e.to_string());
                event
            }
            Err(e @ DeliveryError::Transient { .. }) => {
                // Retry tiers (herald.retry.<channel>.<n>) are not built yet: a transient
                // failure is kept in the dead-letter topic, from where it can be redriven.
                self.dead_letters
                    .send(record, ErrorClass::RetriesExhausted, &e.to_string())
                    .await
                    .map_err(HandlerError::new)?;
                let mut event = self.event(&message, EventKind::DeadLettered, attempt);
                event.reason = Some(e.to_string());
                event
            }
        };
        self.emit(event).await
    }
}

impl<P: Provider> Handler for DispatchHandler<P> {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        let message = match self
            .output
            .codec()
            .decode::<ChannelMessage>(record.payload())
            .await
        {
            Ok(message) => message,
            Err(e) if e.is_retryable() => return Err(HandlerError::new(e)),
            Err(e) => return self.poison(record, &e.to_string()).await,
        };
        if message.channel != self.channel.as_str() {
            let reason = format!(
                "message for channel {:?} on the {} dispatcher's topic",
                message.channel, self.channel
            );
            return self.poison(record, &reason).await;
        }
        self.deliver(record, message).await
    }
}
