//! Prometheus metrics: one registry per process, `herald_` prefix, bounded labels only
//! (group, topic, channel, provider, outcome; never ids, addresses or tokens).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The process-wide registry every role registers its metrics in.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::new)
}

/// Latency buckets from 0.5 ms to 30 s.
pub const LATENCY_BUCKETS: &[f64] =
    &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Metrics are defined once per process, each in a `OnceLock` next to the code that updates
/// it, and registered here.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    remember(name, MetricKind::Counter);
    register(IntCounterVec::new(Opts::new(name, help), labels))
}

pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    remember(name, MetricKind::Gauge);
    register(IntGaugeVec::new(Opts::new(name, help), labels))
}

pub fn histogram_vec(name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
    remember(name, MetricKind::Histogram);
    register(HistogramVec::new(opts, labels))
}

/// A histogram with its own buckets (seconds), for spans far from the default's 5 ms–10 s.
pub fn histogram_vec_with_buckets(
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let opts = HistogramOpts::new(name, help).buckets(buckets.to_vec());
    remember(name, MetricKind::Histogram);
    register(HistogramVec::new(opts, labels))
}

/// The name of every metric family registered so far, with its kind: what dashboards and
/// alert rules may refer to (see `herald::metrics_catalog`).
pub fn registered() -> Vec<(String, MetricKind)> {
    names().lock().map(|n| n.iter().map(|(k, v)| (k.clone(), *v)).collect()).unwrap_or_default()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

fn names() -> &'static std::sync::Mutex<std::collections::BTreeMap<String, MetricKind>> {
    static NAMES: OnceLock<std::sync::Mutex<std::collections::BTreeMap<String, MetricKind>>> =
        OnceLock::new();
    NAMES.get_or_init(Default::default)
}

fn register<M>(metric: prometheus::Result<M>) -> M
where
    M: prometheus::core::Collector + Clone + 'static,
{
    // Names and labels are literals of this code base and each metric is created once, so
    // failing here is a programming error that the first test touching the metric shows.
    #[allow(clippy::expect_used)]
    let metric = metric.expect("metric definition is valid");
    #[allow(clippy::expect_used)]
    registry().register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

fn remember(name: &str, kind: MetricKind) {
    if let Ok(mut names) = names().lock() {
        names.insert(name.to_owned(), kind);
    }
}

/// The Prometheus text exposition of everything registered.
pub fn render() -> String {
    let mut buffer = Vec::new();
    if let Err(e) = TextEncoder::new().encode(&registry().gather(), &mut buffer) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    String::from_utf8(buffer).unwrap_or_default()
}

struct ConsumerMetrics {
    received: IntCounterVec,
    handled: IntCounterVec,
    handle_seconds: HistogramVec,
    in_flight: IntGaugeVec,
    held: IntGaugeVec,
    abandoned: IntCounterVec,
    dead_letters: IntCounterVec,
    queue_full: IntCounterVec,
    produced: IntCounterVec,
    lag: IntGaugeVec,
}

/// Defines the metrics of the runtime (consumers, producers, topic depth) now rather than at
/// their first use.
pub fn define_runtime_metrics() {
    let _ = consumer_metrics();
    let _ = topic_depth_gauge();
}

/// `herald_topic_records{topic}`, kept by `kafka::admin::track_depth`.
pub(crate) fn topic_depth_gauge() -> &'static IntGaugeVec {
    static DEPTH: OnceLock<IntGaugeVec> = OnceLock::new();
    DEPTH.get_or_init(|| {
        gauge_vec("herald_topic_records", "Records currently retained in a topic.", &["topic"])
    })
}

fn consumer_metrics() -> &'static ConsumerMetrics {
    static METRICS: OnceLock<ConsumerMetrics> = OnceLock::new();
    METRICS.get_or_init(|| ConsumerMetrics {
        received: counter_vec(
            "herald_consumer_records_total",
            "Records fetched by a consumer group member.",
            &["group"],
        ),
        handled: counter_vec(
            "herald_consumer_handled_total",
            "Handler runs by outcome (error = not durable, retried).",
            &["group", "outcome"],
        ),
        handle_seconds: histogram_vec(
            "herald_consumer_handle_seconds",
            "Time to handle one record until its outputs were acknowledged.",
            &["group"],
        ),
        in_flight: gauge_vec(
            "herald_consumer_in_flight",
            "Records fetched and not yet finished.",
            &["group"],
        ),
        held: gauge_vec(
            "herald_consumer_held",
            "Records held until their due time (retry tiers); their partitions are paused.",
            &["group"],
        ),
        abandoned: counter_vec(
            "herald_consumer_abandoned_total",
            "Records left to the next owner when a drain deadline passed.",
            &["group"],
        ),
        dead_letters: counter_vec(
            "herald_dead_letters_total",
            "Records sent to the dead-letter topic.",
            &["group", "class"],
        ),
        queue_full: counter_vec(
            "herald_producer_queue_full_total",
            "Times a producer waited because its local queue was full.",
            &["topic"],
        ),
        produced: counter_vec(
            "herald_producer_records_total",
            "Records produced, by outcome: acked (by all in-sync replicas) or failed.",
            &["topic", "outcome"],
        ),
        lag: gauge_vec(
            "herald_consumer_lag",
            "Records behind the log end, per partition this member owns (librdkafka statistics).",
            &["group", "topic", "partition"],
        ),
    })
}

/// Creates a consumer group's counters at zero when its consumer starts: a series born at
/// its first observation reads to Prometheus as starting from that value, so `rate()` and
/// `increase()` over the first burst would be zero.
pub(crate) fn zero_consumer_series(group: &str) {
    let m = consumer_metrics();
    let _ = m.received.with_label_values(&[group]);
    let _ = m.abandoned.with_label_values(&[group]);
    let _ = m.handle_seconds.with_label_values(&[group]);
    for outcome in ["ok", "error"] {
        let _ = m.handled.with_label_values(&[group, outcome]);
    }
    for class in ["poison", "permanent", "retries_exhausted"] {
        let _ = m.dead_letters.with_label_values(&[group, class]);
    }
}

pub(crate) fn consumer_received(group: &str, records: usize) {
    consumer_metrics().received.with_label_values(&[group]).inc_by(records as u64);
}

/// A group's handling series, looked up once: a key queue counts every record it handles.
#[derive(Clone)]
pub(crate) struct HandledSeries {
    ok: prometheus::IntCounter,
    error: prometheus::IntCounter,
    seconds: prometheus::Histogram,
}

impl HandledSeries {
    pub(crate) fn of(group: &str) -> Self {
        let m = consumer_metrics();
        Self {
            ok: m.handled.with_label_values(&[group, "ok"]),
            error: m.handled.with_label_values(&[group, "error"]),
            seconds: m.handle_seconds.with_label_values(&[group]),
        }
    }

    pub(crate) fn handled(&self, ok: bool, took: Duration) {
        if ok { &self.ok } else { &self.error }.inc();
        self.seconds.observe(took.as_secs_f64());
    }
}

pub(crate) fn consumer_in_flight(group: &str, in_flight: usize) {
    let value = i64::try_from(in_flight).unwrap_or(i64::MAX);
    consumer_metrics().in_flight.with_label_values(&[group]).set(value);
}

pub(crate) fn consumer_held(group: &str, held: usize) {
    let value = i64::try_from(held).unwrap_or(i64::MAX);
    consumer_metrics().held.with_label_values(&[group]).set(value);
}

pub(crate) fn consumer_abandoned(group: &str, count: usize) {
    consumer_metrics().abandoned.with_label_values(&[group]).inc_by(count as u64);
}

pub(crate) fn dead_lettered(group: &str, class: &str) {
    consumer_metrics().dead_letters.with_label_values(&[group, class]).inc();
}

pub(crate) fn producer_queue_full(topic: &str) {
    consumer_metrics().queue_full.with_label_values(&[topic]).inc();
}

pub(crate) fn produced(topic: &str, acked: bool) {
    let outcome = if acked { "acked" } else { "failed" };
    consumer_metrics().produced.with_label_values(&[topic, outcome]).inc();
}

/// The lag librdkafka reports for one owned partition; unknown (`None`) removes the series,
/// so a partition that moved to another member stops reporting from here.
pub(crate) fn consumer_lag(group: &str, topic: &str, partition: i32, lag: Option<i64>) {
    let partition = partition.to_string();
    let gauge = &consumer_metrics().lag;
    match lag {
        Some(lag) => gauge.with_label_values(&[group, topic, &partition]).set(lag),
        None => {
            let _ = gauge.remove_label_values(&[group, topic, &partition]);
        }
    }
}
