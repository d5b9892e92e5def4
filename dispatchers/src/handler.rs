//! One channel message in: a claim in the delivery ledger, at most one provider call, and
//! the outcome made durable (ledger, event, retry tier or dead letter) before the offset
//! may be stored.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use herald_runtime::kafka::{
    AvroProducer, DeadLetters, ErrorClass, Handler, HandlerError, Message, OwnedHeaders,
    OwnedMessage, ReplayMark,
};
use herald_runtime::metrics;
use herald_schemas::{Channel, ChannelMessage, DeliveryEvent, EventKind, Topics};
use prometheus::{HistogramVec, IntCounterVec};

use crate::ledger::{Claim, Completion, DeliveryKey, DeliveryLedger};
use crate::providers::{DeliveryError, Sent};
use crate::retry::{self, NextStep, RetryPolicy};
use crate::routes::{Pick, ProviderHandle, Routes};

struct DeliveryMetrics {
    outcomes: IntCounterVec,
    provider_seconds: HistogramVec,
    end_to_end_seconds: HistogramVec,
    took_over: IntCounterVec,
}

fn delivery_metrics() -> &'static DeliveryMetrics {
    static METRICS: OnceLock<DeliveryMetrics> = OnceLock::new();
    METRICS.get_or_init(|| DeliveryMetrics {
        outcomes: metrics::counter_vec(
            "herald_deliveries_total",
            "Deliveries by channel, provider and outcome (sent, permanent, dead_target, transient, invalid, duplicate_suppressed, deferred).",
            &["channel", "provider", "outcome"],
        ),
        provider_seconds: metrics::histogram_vec(
            "herald_provider_seconds",
            "Time from calling a provider to its answer.",
            &["channel", "provider"],
        ),
        end_to_end_seconds: metrics::histogram_vec_with_buckets(
            "herald_end_to_end_seconds",
            "From the request's acceptance to the provider's final answer (sent or failed).",
            &["channel", "outcome"],
            &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0],
        ),
        took_over: metrics::counter_vec(
            "herald_ledger_unknown_total",
            "Stale claims of crashed processes taken over: deliveries that may have been sent twice.",
            &["channel"],
        ),
    })
}

pub(crate) fn define_metrics() {
    let _ = delivery_metrics();
}

/// Every outcome a delivery is counted under.
const OUTCOMES: [&str; 8] = [
    "sent",
    "permanent",
    "dead_target",
    "transient",
    "invalid",
    "duplicate_suppressed",
    "deferred",
    "expired",
];

/// Creates the series of `channel` and its providers at zero, when the dispatcher starts: a
/// series born at its first observation reads to Prometheus as starting from that value, so
/// `rate()` over the first burst is zero and a p99 panel empty.
pub(crate) fn zero_series(channel: Channel, providers: &[&str]) {
    let m = delivery_metrics();
    let channel = channel.as_str();
    for outcome in ["sent", "failed"] {
        let _ = m.end_to_end_seconds.with_label_values(&[channel, outcome]);
    }
    let _ = m.took_over.with_label_values(&[channel]);
    for provider in providers.iter().copied().chain(["none"]) {
        let _ = m.provider_seconds.with_label_values(&[channel, provider]);
        for outcome in OUTCOMES {
            let _ = m.outcomes.with_label_values(&[channel, provider, outcome]);
        }
    }
}

/// Everything a dispatcher needs besides its provider and ledger.
#[derive(Debug, Clone)]
pub struct DispatchSetup {
    pub channel: Channel,
    pub topics: Topics,
    pub retry: RetryPolicy,
    pub claim_timeout: Duration,
    /// Open and click tracking of email HTML, when configured.
    pub tracker: Option<herald_runtime::tracking::EngagementTracker>,
}

pub(crate) struct DispatchHandler<L> {
    setup: DispatchSetup,
    routes: Routes,
    ledger: std::sync::Arc<L>,
    output: AvroProducer,
    dead_letters: DeadLetters,
}

/// What is left to make durable once the provider answered (or was not asked).
enum Settlement {
    Sent(Sent),
    Failed {
        error: DeliveryError,
    },
    Invalid {
        error: DeliveryError,
    },
    Retry {
        tier: u32,
        due_at: i64,
        reason: String,
        next_attempt: i32,
    },
    Exhausted {
        reason: String,
    },
    /// Another process holds the claim: come back when it would be stale.
    Wait {
        tier: u32,
        due_at: i64,
    },
}

const SETTLE_RETRY_START: Duration = Duration::from_millis(100);
const SETTLE_RETRY_MAX: Duration = Duration::from_secs(5);

impl<L: DeliveryLedger> DispatchHandler<L> {
    pub(crate) fn new(
        setup: DispatchSetup,
        routes: Routes,
        ledger: std::sync::Arc<L>,
        output: AvroProducer,
        dead_letters: DeadLetters,
    ) -> Self {
        Self { setup, routes, ledger, output, dead_letters }
    }

    fn count(&self, provider: &str, outcome: &str) {
        let labels = [self.setup.channel.as_str(), provider, outcome];
        delivery_metrics().outcomes.with_label_values(&labels).inc();
    }

    fn event(
        &self,
        message: &ChannelMessage,
        kind: EventKind,
        attempt: i32,
        provider: &str,
    ) -> DeliveryEvent {
        let mut event = DeliveryEvent::new(&message.notification_id, kind);
        event.channel = Some(self.setup.channel.as_str().to_owned());
        event.target = Some(message.target.clone());
        event.user_id = message.user_id.clone();
        event.provider = Some(provider.to_owned());
        event.attempt = attempt;
        event
    }

    /// Publishes `event` about `record`, with the record's replay mark.
    async fn emit(&self, record: &OwnedMessage, event: DeliveryEvent) -> Result<(), HandlerError> {
        let topic = self.setup.topics.events();
        let key = event.notification_id.clone();
        self.produce_event(record, &topic, &key, event).await
    }

    /// A dead target is the directory's business, which is the enricher's: it learns of it
    /// from its own topic, keyed by the token so that reports of one device stay in order.
    async fn report_to_directory(
        &self,
        record: &OwnedMessage,
        event: &DeliveryEvent,
    ) -> Result<(), HandlerError> {
        let topic = self.setup.topics.directory_updates();
        let key = event.target.as_deref().unwrap_or(&event.notification_id);
        self.produce_event(record, &topic, key, event.clone()).await
    }

    /// `event`, marked as the record's replay if it is one, produced and acknowledged.
    async fn produce_event(
        &self,
        record: &OwnedMessage,
        topic: &str,
        key: &str,
        mut event: DeliveryEvent,
    ) -> Result<(), HandlerError> {
        ReplayMark::of(record).mark(&mut event);
        let ack = self.output.enqueue(topic, key, &event, None).await.map_err(HandlerError::new)?;
        ack.wait().await.map(drop).map_err(HandlerError::new)
    }

    /// A push that failed for good goes to its category's fallback channel, if it has one.
    /// Produced again when this step is retried: the fallback dispatcher's ledger sends it
    /// once.
    async fn fall_back(
        &self,
        record: &OwnedMessage,
        message: &ChannelMessage,
    ) -> Result<Option<Channel>, HandlerError> {
        let Some((to, fallback)) = message.fallback_message() else { return Ok(None) };
        let topic = self.setup.topics.channel(to);
        let headers = ReplayMark::of(record).add_to(OwnedHeaders::new());
        let ack = self
            .output
            .enqueue(&topic, &fallback.target, &fallback, Some(headers))
            .await
            .map_err(HandlerError::new)?;
        ack.wait().await.map_err(HandlerError::new)?;
        let mut routed = DeliveryEvent::new(&fallback.notification_id, EventKind::Routed);
        routed.channel = Some(to.as_str().to_owned());
        routed.target = Some(fallback.target.clone());
        routed.user_id = fallback.user_id.clone();
        routed.detail.insert("fallback_from".into(), message.channel.clone());
        self.emit(record, routed).await?;
        Ok(Some(to))
    }

    async fn poison(&self, record: &OwnedMessage, reason: &str) -> Result<(), HandlerError> {
        self.dead_letters.send(record, ErrorClass::Poison, reason).await.map_err(HandlerError::new)
    }

    async fn call_provider(
        &self,
        provider: &ProviderHandle,
        message: &ChannelMessage,
        attempt: i32,
    ) -> Settlement {
        let started = Instant::now();
        let result = provider.send(message).await;
        let labels = [self.setup.channel.as_str(), provider.name()];
        delivery_metrics()
            .provider_seconds
            .with_label_values(&labels)
            .observe(started.elapsed().as_secs_f64());
        self.count(
            provider.name(),
            match &result {
                Ok(_) => "sent",
                Err(e) => e.outcome_label(),
            },
        );
        match result {
            Ok(sent) => Settlement::Sent(sent),
            Err(error @ (DeliveryError::Permanent { .. } | DeliveryError::DeadTarget { .. })) => {
                Settlement::Failed { error }
            }
            Err(error @ DeliveryError::Invalid { .. }) => Settlement::Invalid { error },
            Err(DeliveryError::Transient { reason, retry_after }) => {
                match self.setup.retry.after_failure(
                    attempt,
                    herald_schemas::now_millis(),
                    retry_after,
                ) {
                    NextStep::Retry { tier, due_at } => {
                        Settlement::Retry { tier, due_at, reason, next_attempt: attempt + 1 }
                    }
                    NextStep::Exhausted => Settlement::Exhausted { reason },
                }
            }
        }
    }

    /// The message as it is sent: an email's HTML with tracked links and an open pixel,
    /// unless tracking is off or its category is excluded.
    fn tracked(&self, mut message: ChannelMessage) -> ChannelMessage {
        let Some(tracker) = &self.setup.tracker else { return message };
        if self.setup.channel != Channel::Email || !tracker.tracks(&message.category) {
            return message;
        }
        let (id, target) = (message.notification_id.clone(), message.target.clone());
        if let Some(html) = message.email.as_mut().and_then(|e| e.html.as_mut()) {
            *html = tracker.rewrite_html(html, &id, &target);
        }
        message
    }

    async fn deliver(
        &self,
        record: &OwnedMessage,
        message: ChannelMessage,
    ) -> Result<(), HandlerError> {
        let message = self.tracked(message);
        let attempt = herald_runtime::kafka::attempt(record);
        let (provider, slot) = loop {
            let (provider, probe) = match self
                .routes
                .pick(&message.route, message.app_id.as_deref())
            {
                Pick::Send { provider, probe } => (provider, probe),
                Pick::Held { until_ms } => {
                    // Not an attempt: the runtime keeps the record and tries again with
                    // back-off, so an outage without failover spends no retry tiers and
                    // fills no DLQ.
                    let wait_ms = until_ms.saturating_sub(herald_schemas::now_millis()).max(0);
                    return Err(HandlerError::new(format!(
                        "every provider of route {:?} of channel {} is failing; holding for {wait_ms} ms",
                        message.route, self.setup.channel
                    )));
                }
                Pick::NoProvider => {
                    let reason = format!(
                        "no provider serves route {:?} of channel {}",
                        message.route, self.setup.channel
                    );
                    return self.poison(record, &reason).await;
                }
            };
            let slot = provider.slot(message.lane()).await;
            // The provider may have been taken out while this waited for its slot.
            if probe || provider.is_healthy() {
                break (provider, slot);
            }
        };
        let key = DeliveryKey {
            notification_id: ReplayMark::of(record).ledger_id(&message.notification_id),
            channel: self.setup.channel.as_str().to_owned(),
            target: message.target.clone(),
        };
        let now = herald_schemas::now_millis();
        let claim = self
            .ledger
            .claim(&key, now, self.setup.claim_timeout)
            .await
            .map_err(HandlerError::new)?;
        let settlement = match claim {
            Claim::Done(_) => {
                // A redelivery or replay of a finished delivery: its events exist already.
                self.count(provider.name(), "duplicate_suppressed");
                return Ok(());
            }
            Claim::Busy { claimed_at } => {
                self.count(provider.name(), "deferred");
                let timeout =
                    i64::try_from(self.setup.claim_timeout.as_millis()).unwrap_or(i64::MAX);
                let tier = self.setup.retry.tier_for_wait(attempt);
                Settlement::Wait { tier, due_at: claimed_at.saturating_add(timeout) }
            }
            Claim::Granted { took_over } => {
                if took_over {
                    delivery_metrics()
                        .took_over
                        .with_label_values(&[self.setup.channel.as_str()])
                        .inc();
                    tracing::warn!(channel = %self.setup.channel, notification_id = %key.notification_id,
                        "took over a stale claim: the previous attempt's outcome is unknown");
                }
                self.call_provider(provider, &message, attempt).await
            }
        };
        // The provider has answered: from here on the handler must not fail, or the record
        // would be handled again and the provider called twice. Each step is idempotent and
        // retried until it holds; a drain deadline abandons it (the ledger's claim then
        // protects against a second send). The send slot is given back as soon as the
        // ledger knows the outcome: events and retry records need no provider.
        self.until_durable(|| self.record_outcome(&key, &settlement)).await;
        drop(slot);
        let outcome = match &settlement {
            Settlement::Sent(_) => Some("sent"),
            Settlement::Failed { .. } => Some("failed"),
            _ => None,
        };
        if let Some(outcome) = outcome {
            let waited = (herald_schemas::now_millis() - message.accepted_at).max(0) as f64;
            let labels = [self.setup.channel.as_str(), outcome];
            delivery_metrics().end_to_end_seconds.with_label_values(&labels).observe(waited / 1e3);
        }
        let name = provider.name();
        self.until_durable(|| self.publish(record, &message, attempt, name, &settlement)).await;
        Ok(())
    }

    async fn until_durable<F, Fut>(&self, mut step: F)
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), HandlerError>>,
    {
        let mut backoff = SETTLE_RETRY_START;
        while let Err(e) = step().await {
            tracing::warn!(channel = %self.setup.channel, error = %e, retry_in = ?backoff, "outcome not durable yet; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(SETTLE_RETRY_MAX);
        }
    }

    /// What the ledger must know before anything else happens.
    async fn record_outcome(
        &self,
        key: &DeliveryKey,
        settlement: &Settlement,
    ) -> Result<(), HandlerError> {
        let now = herald_schemas::now_millis();
        let result = match settlement {
            Settlement::Sent(_) => self.ledger.complete(key, Completion::Sent, now).await,
            Settlement::Failed { .. } | Settlement::Invalid { .. } => {
                self.ledger.complete(key, Completion::Failed, now).await
            }
            // The retry claims it again; a dead letter can be redriven.
            Settlement::Retry { .. } | Settlement::Exhausted { .. } => {
                self.ledger.release(key).await
            }
            // The claim is another process's.
            Settlement::Wait { .. } => Ok(()),
        };
        result.map_err(HandlerError::new)
    }

    /// The outcome's records: the event, and the retry record or dead letter.
    async fn publish(
        &self,
        record: &OwnedMessage,
        message: &ChannelMessage,
        attempt: i32,
        provider: &str,
        settlement: &Settlement,
    ) -> Result<(), HandlerError> {
        let event = match settlement {
            Settlement::Sent(sent) => {
                let mut event = self.event(message, EventKind::Sent, attempt, provider);
                if let Some(id) = &sent.provider_message_id {
                    event.detail.insert("provider_message_id".into(), id.clone());
                }
                event
            }
            Settlement::Failed { error } => {
                let mut event = self.event(message, EventKind::Failed, attempt, provider);
                if let Some(to) = self.fall_back(record, message).await? {
                    event.detail.insert("fallback".into(), to.as_str().to_owned());
                }
                event.reason = Some(error.to_string());
                if matches!(error, DeliveryError::DeadTarget { .. }) {
                    event.detail.insert("dead_target".into(), "true".into());
                    self.report_to_directory(record, &event).await?;
                }
                event
            }
            Settlement::Invalid { error } => {
                self.poison(record, &error.to_string()).await?;
                let mut event = self.event(message, EventKind::DeadLettered, attempt, provider);
                event.reason = Some(error.to_string());
                event
            }
            Settlement::Retry { tier, due_at, reason, next_attempt } => {
                let headers = retry::retry_headers(record, *next_attempt, *due_at, reason);
                self.to_tier(record, *tier, headers).await?;
                let mut event = self.event(message, EventKind::Retrying, attempt, provider);
                event.reason = Some(reason.clone());
                event.detail.insert("next_attempt_at".into(), due_at.to_string());
                event.detail.insert("tier".into(), tier.to_string());
                event
            }
            Settlement::Exhausted { reason } => {
                let reason = format!("retries exhausted after attempt {attempt}: {reason}");
                self.dead_letters
                    .send(record, ErrorClass::RetriesExhausted, &reason)
                    .await
                    .map_err(HandlerError::new)?;
                let mut event = self.event(message, EventKind::DeadLettered, attempt, provider);
                event.reason = Some(reason);
                event
            }
            Settlement::Wait { tier, due_at } => {
                let reason =
                    "another dispatcher holds the delivery claim; waiting for it to expire";
                let headers = retry::retry_headers(record, attempt, *due_at, reason);
                self.to_tier(record, *tier, headers).await?;
                let mut event = self.event(message, EventKind::Retrying, attempt, provider);
                event.reason = Some(reason.into());
                event.detail.insert("next_attempt_at".into(), due_at.to_string());
                event
            }
        };
        self.emit(record, event).await
    }

    async fn to_tier(
        &self,
        record: &OwnedMessage,
        tier: u32,
        headers: OwnedHeaders,
    ) -> Result<(), HandlerError> {
        let topic = self.setup.topics.retry(self.setup.channel, tier);
        let payload = record.payload().unwrap_or_default();
        self.output
            .producer()
            .send(&topic, record.key(), payload, Some(headers))
            .await
            .map(drop)
            .map_err(HandlerError::new)
    }
}

impl<L: DeliveryLedger> Handler for DispatchHandler<L> {
    async fn handle(&self, record: &OwnedMessage) -> Result<(), HandlerError> {
        let codec = self.output.codec();
        let decoded = self.dead_letters.decode_or_dead_letter::<ChannelMessage>(codec, record);
        let Some(message) = decoded.await? else { return Ok(()) };
        if message.channel != self.setup.channel.as_str() {
            let reason = format!(
                "message for channel {:?} on the {} dispatcher's topic",
                message.channel, self.setup.channel
            );
            return self.poison(record, &reason).await;
        }
        if message.is_expired(herald_schemas::now_millis()) {
            // Too late to be worth sending: in a retry tier, or behind a long hold.
            self.count("none", "expired");
            let attempt = herald_runtime::kafka::attempt(record);
            let mut event = self.event(&message, EventKind::Skipped, attempt, "none");
            event.provider = None;
            event.reason = Some("expired".into());
            return self.emit(record, event).await;
        }
        self.deliver(record, message).await
    }
}
