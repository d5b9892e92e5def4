//! One request record in, its channel messages and events out.

use std::sync::Arc;

use herald_runtime::kafka::{
    AvroProducer, DeadLetters, Durable, Handler, HandlerError, Header, OwnedHeaders, OwnedMessage,
    ReplayMark, wait_all,
};
use herald_schemas::{DeliveryEvent, EventKind, NotificationRequest, Topics, headers};

use crate::config::Rules;
use crate::directory::{Directory, QuotaCounter};
use crate::fanout::{self, Plan};
use crate::freshness::{Freshness, Subject};
use crate::templates::Renderer;

struct EnrichMetrics {
    outcomes: prometheus::IntCounterVec,
}

fn enrich_metrics() -> &'static EnrichMetrics {
    static METRICS: std::sync::OnceLock<EnrichMetrics> = std::sync::OnceLock::new();
    METRICS.get_or_init(|| EnrichMetrics {
        outcomes: herald_runtime::metrics::counter_vec(
            "herald_enricher_outcomes_total",
            "What the enricher did per requested channel: routed (one per target), scheduled \
             (quiet hours), failed (template), or the reason it skipped.",
            &["channel", "outcome"],
        ),
    })
}

pub(crate) fn define_metrics() {
    let _ = enrich_metrics();
}

/// Creates every series of the enricher's outcomes at zero when it starts: a series born at
/// its first observation reads to Prometheus as starting from that value.
pub(crate) fn zero_series() {
    let outcomes = &enrich_metrics().outcomes;
    let channels = herald_schemas::Channel::ALL.map(|c| c.as_str());
    for channel in channels.into_iter().chain(["push"]) {
        let kinds = ["routed", "scheduled", "failed"].into_iter();
        for outcome in kinds.chain(fanout::SkipReason::ALL.map(fanout::SkipReason::as_str)) {
            let _ = outcomes.with_label_values(&[channel, outcome]);
        }
    }
}

/// The labels an event the enricher publishes is counted under, from closed sets only: the
/// channel of a skip may be whatever a producer wrote.
fn outcome_labels(event: &DeliveryEvent) -> (&'static str, &'static str) {
    let channel = match event.channel.as_deref() {
        Some("push") => "push",
        Some(c) => c.parse::<herald_schemas::Channel>().map_or("other", |c| c.as_str()),
        None => "none",
    };
    let outcome = match event.kind {
        EventKind::Skipped => event
            .reason
            .as_deref()
            .and_then(fanout::SkipReason::parse)
            .map_or("skipped", fanout::SkipReason::as_str),
        kind => kind.as_str(),
    };
    (channel, outcome)
}

pub(crate) struct EnrichHandler<D> {
    directory: Arc<D>,
    freshness: Freshness,
    output: AvroProducer,
    dead_letters: DeadLetters,
    topics: Topics,
    rules: Rules,
    renderer: Renderer,
}

impl<D: Directory> EnrichHandler<D> {
    pub(crate) fn new(
        directory: Arc<D>,
        output: AvroProducer,
        dead_letters: DeadLetters,
        (topics, rules): (Topics, Rules),
        freshness: Freshness,
    ) -> Self {
        Self {
            directory,
            freshness,
            output,
            dead_letters,
            topics,
            rules,
            renderer: Renderer::default(),
        }
    }

    /// Decides and enqueues a request's outputs; the result waits for their acknowledgements.
    async fn enrich(
        &self,
        mut request: NotificationRequest,
        mark: &ReplayMark,
    ) -> Result<Durable, HandlerError> {
        if request.is_expired(herald_schemas::now_millis()) {
            let mut plan = Plan::default();
            plan.skip(&request, None, fanout::SkipReason::Expired);
            return self.publish(plan, mark).await;
        }
        // Every directory change written before this request is applied and out of the cache
        // before it is read.
        let mut subjects = Vec::with_capacity(2);
        if let Some(user_id) = &request.recipient.user_id {
            subjects.push(Subject::User(user_id.clone()));
        }
        if let Some(template) = &request.template {
            subjects.push(Subject::Template(template.id.clone()));
        }
        self.freshness.ready(&subjects).await.map_err(HandlerError::new)?;
        let profile = async {
            match request.recipient.user_id.as_deref() {
                Some(user_id) => self.directory.profile(user_id).await,
                None => Ok(None),
            }
        };
        let template = async {
            match &request.template {
                Some(t) => self.directory.template(&t.id).await,
                None => Ok(Vec::new()),
            }
        };
        let (profile, template) = tokio::join!(profile, template);
        let (profile, template) =
            (profile.map_err(HandlerError::new)?, template.map_err(HandlerError::new)?);
        let user = profile.as_ref().map(|p| &p.user);
        if let Err(e) = self.renderer.render(&mut request, &template, user) {
            tracing::warn!(notification_id = %request.notification_id, error = %e, "not sent");
            let mut event = DeliveryEvent::new(&request.notification_id, EventKind::Failed);
            event.user_id = request.recipient.user_id.clone();
            event.reason = Some(e.reason().to_owned());
            event.detail.insert("error".into(), e.to_string());
            return self.publish(Plan { events: vec![event], ..Plan::default() }, mark).await;
        }
        let mut plan = fanout::plan(&request, profile.as_ref(), &self.rules);
        if let Some(profile) = &profile {
            self.apply_caps(&request, &profile.user, &mut plan).await?;
        }
        self.publish(plan, mark).await
    }

    /// Counts the plan's channels against the category's daily caps; a channel over its cap
    /// is taken out of the plan. Counted by notification id, so a redelivered request is not
    /// counted twice.
    async fn apply_caps(
        &self,
        request: &NotificationRequest,
        user: &crate::directory::User,
        plan: &mut Plan,
    ) -> Result<(), HandlerError> {
        if self.rules.is_critical(&request.category) {
            return Ok(());
        }
        let day = crate::quiet::local_day(herald_schemas::now_millis(), user.timezone.as_deref());
        for channel in plan.requested_channels() {
            let Some(limit) = self.rules.caps.limit(&request.category, channel) else { continue };
            let counter = QuotaCounter {
                user_id: user.user_id.clone(),
                category: request.category.clone(),
                channel: channel.to_owned(),
                day: day.clone(),
            };
            let allowed = self
                .directory
                .take_quota(&counter, &request.notification_id, limit)
                .await
                .map_err(HandlerError::new)?;
            if !allowed {
                plan.drop_channel(request, channel, fanout::SkipReason::FrequencyCapped);
            }
        }
        Ok(())
    }

    async fn publish(&self, mut plan: Plan, mark: &ReplayMark) -> Result<Durable, HandlerError> {
        let mut acks = Vec::with_capacity(plan.messages.len() + plan.events.len());
        for (channel, message) in &plan.messages {
            let headers = mark.add_to(OwnedHeaders::new().insert(Header {
                key: headers::NOTIFICATION_ID,
                value: Some(message.notification_id.as_str()),
            }));
            let topic = self.topics.channel_in(*channel, message.lane());
            acks.push(
                self.output
                    .enqueue(&topic, &message.target, message, Some(headers))
                    .await
                    .map_err(HandlerError::new)?,
            );
        }
        if let Some(later) = &plan.deferred {
            acks.push(self.defer(later, mark).await?);
        }
        let events_topic = self.topics.events();
        for event in &mut plan.events {
            mark.mark(event);
        }
        for event in &plan.events {
            acks.push(
                self.output
                    .enqueue(&events_topic, &event.notification_id, event, None)
                    .await
                    .map_err(HandlerError::new)?,
            );
        }
        // Only the labels wait for the acknowledgements, not the events.
        let outcomes: Vec<_> = plan.events.iter().map(outcome_labels).collect();
        Ok(Box::pin(async move {
            wait_all(acks).await.map_err(HandlerError::new)?;
            let counter = &enrich_metrics().outcomes;
            for (channel, outcome) in outcomes {
                counter.with_label_values(&[channel, outcome]).inc();
            }
            Ok(())
        }))
    }

    /// Into the delay tiers, as a scheduled send is: the scheduler hands it back to
    /// `herald.requests` at its `send_at`.
    async fn defer(
        &self,
        request: &NotificationRequest,
        mark: &ReplayMark,
    ) -> Result<herald_runtime::kafka::Ack, HandlerError> {
        let now = herald_schemas::now_millis();
        let send_at = request.send_at.unwrap_or(now);
        let (topic, due_at) = self.topics.next_stop(send_at, request.lane(), now);
        let due_at = due_at.map(|at| at.to_string());
        let mut record_headers = OwnedHeaders::new().insert(Header {
            key: headers::NOTIFICATION_ID,
            value: Some(request.notification_id.as_str()),
        });
        if let Some(due_at) = &due_at {
            let due = Header { key: headers::DUE_AT, value: Some(due_at.as_str()) };
            record_headers = record_headers.insert(due);
        }
        self.output
            .enqueue(&topic, request.partition_key(), request, Some(mark.add_to(record_headers)))
            .await
            .map_err(HandlerError::new)
    }
}

impl<D: Directory> Handler for EnrichHandler<D> {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        match self.start(message).await? {
            Some(durable) => durable.await,
            None => Ok(()),
        }
    }

    /// Requests of one user are decided in order (frequency caps count them as they come);
    /// their outputs are acknowledged while the user's next requests are decided.
    async fn start(&self, message: &OwnedMessage) -> Result<Option<Durable>, HandlerError> {
        let codec = self.output.codec();
        match self.dead_letters.decode_or_dead_letter::<NotificationRequest>(codec, message).await?
        {
            Some(request) => self.enrich(request, &ReplayMark::of(message)).await.map(Some),
            None => Ok(None),
        }
    }
}
