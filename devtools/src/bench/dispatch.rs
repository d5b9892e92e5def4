//! `herald bench dispatch`: how fast each provider kind sends against its local stand-in
//! answering after a set latency. Two figures per provider: the provider layer alone
//! (slots, rate limiter, breaker, HTTP client, the provider's request and answer handling)
//! and a whole dispatcher (channel topic on an embedded Tansu, delivery ledger, events),
//! with the process's peak memory.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_dispatchers::config::{ProviderConfig, ProviderLimits};
use herald_dispatchers::routes::{Pick, Routes};
use herald_runtime::kafka::{admin, wait_all};
use herald_schemas::{Channel, ChannelMessage, EmailContent, PushContent, SmsContent};
use herald_testkit::DevRegistry;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::stack::{Stack, StackArgs};
use super::standins::stand_in;
use herald_wiring::config::HeraldConfig;
use herald_wiring::roles::{self, GivenProviders};

/// A provider kind under measurement, and the channel its messages are for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BenchProvider {
    kind: &'static str,
    channel: Channel,
}

impl BenchProvider {
    /// The kind of `settings`, measured on the first channel it serves.
    pub(crate) fn of(kind: &'static str, settings: &ProviderConfig) -> anyhow::Result<Self> {
        let channel = settings.channels().first().copied();
        let channel = channel.with_context(|| format!("provider kind {kind} serves no channel"))?;
        Ok(Self { kind, channel })
    }

    pub(crate) fn channel(self) -> Channel {
        self.channel
    }

    pub(crate) fn name(self) -> &'static str {
        self.kind
    }
}

impl Serialize for BenchProvider {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.kind)
    }
}

#[derive(Debug, Clone)]
pub struct DispatchBenchOptions {
    /// Provider kinds ([`super::standins::bench_kinds`]).
    pub providers: Vec<&'static str>,
    pub messages: usize,
    pub latency: Duration,
    pub concurrency: usize,
    /// Also run each provider behind a whole dispatcher on an embedded broker.
    pub dispatcher: bool,
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub provider: BenchProvider,
    /// `provider` (the provider layer alone) or `dispatcher` (topic, ledger, events).
    pub mode: &'static str,
    pub messages: usize,
    /// Sends the provider accepted.
    pub sent: usize,
    pub seconds: f64,
    pub sends_per_second: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub errors: usize,
    pub peak_rss_mib: f64,
}

/// Message `i` for `provider`'s channel, to a target the stand-in accepts.
fn message(provider: BenchProvider, i: usize) -> ChannelMessage {
    let channel = provider.channel();
    let target = match channel {
        Channel::Ios => format!("{i:064x}"),
        Channel::Android => format!("bench-device-{i}"),
        Channel::Sms => format!("+1415{:07}", i % 10_000_000),
        Channel::Email => format!("user{i}@example.com"),
    };
    ChannelMessage {
        notification_id: format!("bench-{i}"),
        channel: channel.as_str().to_owned(),
        target,
        user_id: Some(format!("user-{i}")),
        app_id: None,
        route: "default".into(),
        category: "transactional".into(),
        accepted_at: herald_schemas::now_millis(),
        from: None,
        email: (channel == Channel::Email).then(|| EmailContent {
            subject: "Your order shipped".into(),
            text: Some("It is on its way.".into()),
            html: Some("<p>It is on its way.</p>".into()),
        }),
        sms: (channel == Channel::Sms).then(|| SmsContent { text: "Your code is 123456".into() }),
        push: matches!(channel, Channel::Ios | Channel::Android).then(|| PushContent {
            title: Some("Shipped".into()),
            body: "Your order is on its way.".into(),
            data: BTreeMap::from([("screen".to_owned(), "orders".to_owned())]),
        }),
        metadata: BTreeMap::new(),
        fallback: None,
        ..ChannelMessage::default()
    }
}

/// The process's peak resident memory (VmHWM), in MiB; 0 where /proc is not available.
pub fn peak_rss_mib() -> f64 {
    crate::bench::enrich::process_usage(std::process::id()).1
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted.get(rank.saturating_sub(1).min(sorted.len() - 1)).copied()
}

/// The provider layer alone: `concurrency` senders through the provider's handle.
async fn provider_layer(
    provider: BenchProvider,
    config: &HeraldConfig,
    options: &DispatchBenchOptions,
) -> anyhow::Result<BenchRow> {
    let routes =
        Arc::new(Routes::build(provider.channel(), &config.dispatch, &GivenProviders::new())?);
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        let (routes, next, n) = (Arc::clone(&routes), Arc::clone(&next), options.messages);
        tasks.spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0usize);
            let Pick::Send { provider: handle, .. } = routes.pick("default", None) else {
                return (latencies, n);
            };
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let message = message(provider, i);
                let _slot = handle.slot(herald_schemas::Lane::Urgent).await;
                let sent_at = Instant::now();
                match handle.send(&message).await {
                    Ok(_) => latencies.push(sent_at.elapsed().as_secs_f64() * 1000.0),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(result) = tasks.join_next().await {
        let (l, e) = result?;
        latencies.extend(l);
        errors += e;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    Ok(BenchRow {
        provider,
        mode: "provider",
        messages: options.messages,
        sent: latencies.len(),
        seconds,
        sends_per_second: latencies.len() as f64 / seconds.max(1e-9),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        errors,
        peak_rss_mib: peak_rss_mib(),
    })
}

/// A whole dispatcher: messages produced to the channel topic first, then consumed,
/// claimed in the ledger, sent and recorded as events.
/// Returns the raw copy of the messages through the same broker (after warming the broker up
/// for `warmup`), then the dispatcher's row.
async fn whole_dispatcher(
    provider: BenchProvider,
    config: &HeraldConfig,
    options: &DispatchBenchOptions,
    accepted: &(dyn Fn() -> usize + Send + Sync),
    warmup: Duration,
) -> anyhow::Result<[BenchRow; 2]> {
    let channel = provider.channel();
    let output = roles::output(config, "herald-bench")?;
    let topic = config.kafka.topics().channel(channel);
    let mut acks = Vec::new();
    for i in 0..options.messages {
        let message = message(provider, i);
        acks.push(output.enqueue(&topic, &message.target, &message, None).await?);
        if acks.len() >= 5_000 {
            wait_all(std::mem::take(&mut acks)).await?;
        }
    }
    wait_all(acks).await?;
    let copy = format!("{}bench.copy", config.kafka.topic_prefix);
    let route = (topic.as_str(), copy.as_str());
    crate::bench::enrich::warm_up_broker(config, route, options.messages, warmup).await?;
    let copied =
        crate::bench::enrich::copy_records(config, &topic, &copy, options.messages).await?;
    let raw_copy = BenchRow {
        provider,
        mode: "raw copy",
        messages: options.messages,
        sent: options.messages,
        seconds: copied.seconds,
        sends_per_second: options.messages as f64 / copied.seconds,
        p50_ms: None,
        p99_ms: None,
        errors: 0,
        peak_rss_mib: peak_rss_mib(),
    };
    let shutdown = CancellationToken::new();
    let started = Instant::now();
    let dispatcher = {
        let (config, shutdown) = (config.clone(), shutdown.clone());
        tokio::spawn(async move {
            roles::dispatcher(&config, channel, &GivenProviders::new(), shutdown).await
        })
    };
    let deadline = started + Duration::from_secs(600);
    while accepted() < options.messages {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the dispatcher sent {} in 10 minutes",
            accepted()
        );
        if dispatcher.is_finished() {
            anyhow::bail!("the dispatcher stopped: {:?}", dispatcher.await);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.elapsed().as_secs_f64();
    shutdown.cancel();
    dispatcher.await?.context("dispatcher")?;
    let dispatched = BenchRow {
        provider,
        mode: "dispatcher",
        messages: options.messages,
        sent: accepted(),
        seconds,
        sends_per_second: options.messages as f64 / seconds.max(1e-9),
        p50_ms: None,
        p99_ms: None,
        errors: 0,
        peak_rss_mib: peak_rss_mib(),
    };
    Ok([raw_copy, dispatched])
}

pub async fn dispatch(
    options: DispatchBenchOptions,
    tuning: &HeraldConfig,
) -> anyhow::Result<Vec<BenchRow>> {
    let dir = std::env::temp_dir().join(format!("herald-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = run_all(&options, tuning, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run_all(
    options: &DispatchBenchOptions,
    tuning: &HeraldConfig,
    dir: &Path,
) -> anyhow::Result<Vec<BenchRow>> {
    let stack = if options.dispatcher {
        Some(Stack::start(&options.stack, tuning, dir, ("benchdispatch.", 0)).await?)
    } else {
        None
    };
    let result = rounds(options, tuning, dir, stack.as_ref()).await;
    if let Some(stack) = stack {
        stack.stop().await;
    }
    result
}

/// One round per provider: the provider layer, then (with a stack) a whole dispatcher.
async fn rounds(
    options: &DispatchBenchOptions,
    tuning: &HeraldConfig,
    dir: &Path,
    stack: Option<&Stack>,
) -> anyhow::Result<Vec<BenchRow>> {
    let registry = DevRegistry::default().spawn("127.0.0.1:0".parse()?).await?;
    let mut rows = Vec::new();
    for (round, kind) in options.providers.iter().copied().enumerate() {
        let limits = ProviderLimits {
            concurrency: options.concurrency.max(1),
            timeout_ms: 30_000,
            ..ProviderLimits::default()
        };
        let (standin, settings) = stand_in(kind, dir, &limits, options.latency).await?;
        let provider = BenchProvider::of(kind, &settings)?;
        let mut config = match stack {
            Some(stack) => stack.config.clone(),
            None => HeraldConfig {
                kafka: herald_runtime::KafkaConfig {
                    consumer: tuning.kafka.consumer.clone(),
                    ..herald_runtime::KafkaConfig::default()
                },
                ..HeraldConfig::default()
            },
        };
        config.kafka.topic_prefix = format!("{}r{round}.", config.kafka.topic_prefix);
        config.schema_registry.url = format!("http://{registry}");
        config.topics.partitions = 8;
        config.topics.for_single_broker();
        config.dispatch.ledger.path = dir.join(format!("ledger-{round}.db"));
        config.dispatch.providers.insert(provider.name().into(), settings);
        config.dispatch.routes.insert(
            provider.channel().as_str().into(),
            BTreeMap::from([("default".to_owned(), vec![provider.name().to_owned()])]),
        );
        let row = provider_layer(provider, &config, options).await?;
        rows.push(row);
        if stack.is_some() {
            (standin.clear)();
            let mut specs = config.topic_specs();
            if let Some(first) = specs.first().cloned() {
                let name = format!("{}bench.copy", config.kafka.topic_prefix);
                specs.push(herald_runtime::kafka::admin::TopicSpec { name, ..first });
            }
            admin::create_topics(&config.kafka, &specs).await?;
            // The broker warms up once, in the first round.
            let warmup = if round == 0 {
                stack.map_or(Duration::ZERO, |s| s.warmup)
            } else {
                Duration::ZERO
            };
            let accepted = &*standin.accepted;
            rows.extend(whole_dispatcher(provider, &config, options, accepted, warmup).await?);
        }
    }
    Ok(rows)
}

pub fn render(rows: &[BenchRow], options: &DispatchBenchOptions) -> String {
    let mut out = format!(
        "stand-ins answer after {} ms; {} concurrent sends per provider; {} messages each\n\n",
        options.latency.as_secs_f64() * 1000.0,
        options.concurrency,
        options.messages
    );
    if options.dispatcher {
        let broker = match &options.stack.bootstrap_servers {
            Some(servers) => format!("kafka at {servers}"),
            None => format!("{:?}", options.stack.broker).to_lowercase(),
        };
        out.push_str(&format!(
            "broker: {broker}; each raw copy moves that provider's messages through it untouched (records/s)\n\n"
        ));
    }
    out.push_str("provider  mode        sends/s    p50 ms  p99 ms  errors  peak RSS MiB\n");
    for r in rows {
        let ms = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.2}"));
        out.push_str(&format!(
            "{:<9} {:<10} {:>8.0}  {:>7} {:>7} {:>7}  {:>8.0}\n",
            r.provider.name(),
            r.mode,
            r.sends_per_second,
            ms(r.p50_ms),
            ms(r.p99_ms),
            r.errors,
            r.peak_rss_mib
        ));
    }
    out.push_str(
        "\npeak RSS is the whole process (stand-ins and broker included), highest so far\n",
    );
    out
}
