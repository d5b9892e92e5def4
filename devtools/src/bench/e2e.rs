//! `herald bench e2e`: the whole pipeline on one machine against the broker's own limit.
//! A directory of N users (1–3 devices, an address and a phone each) in the embedded store;
//! a raw consume→produce copy of as many request records through the same broker (the
//! limit); then `herald enrich` and `herald dispatch` for email, ios and android, each its
//! own process, delivering to local provider stand-ins (SendGrid, APNs over HTTP/2, FCM)
//! that answer after a set latency. Requests are produced as Avro straight to
//! `herald.requests`, as services do: first all at once (full speed), then at fixed rates.
//! Latency is from a request's acceptance to its `sent` event (written once the provider
//! answered and the ledger recorded it); CPU and peak RSS come from /proc per process.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::progress;
use herald_dispatchers::config::ProviderLimits;
use herald_runtime::config::ConsumerTuning;
use herald_runtime::kafka::{AvroProducer, admin, wait_all};
use herald_schemas::{AvroCodec, Channel, DeliveryEvent, EventKind, Lane};
use rdkafka::Message;
use serde::Serialize;

use super::stack::{Loaded, Stack, StackArgs, spawn_role};
use crate::bench::dispatch::{BenchProvider, percentile};
use crate::bench::enrich::{
    copy_records, in_temp_dir, process_usage, reader_from_start, request, targets,
};
use crate::bench::standins::stand_in;
use herald_wiring::config::HeraldConfig;
use herald_wiring::roles;

/// The consumers' `fetch.wait.max.ms` unless the configuration gives one.
const FETCH_WAIT_MS: &str = "50";

#[derive(Debug, Clone)]
pub struct E2eOptions {
    pub users: usize,
    /// Requests of the full-speed run (and records of the raw copy).
    pub requests: usize,
    /// Requests per second of each fixed-rate run.
    pub rates: Vec<u32>,
    pub rate_seconds: u64,
    /// How long the provider stand-ins take to answer.
    pub latency: Duration,
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Serialize)]
pub struct FullSpeed {
    pub requests: usize,
    pub deliveries: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub deliveries_per_second: f64,
    /// Deliveries per second over the raw copy's records per second.
    pub of_raw_copy: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RateRun {
    pub rate: u32,
    pub requests: usize,
    pub deliveries: usize,
    /// Requests per second the producer actually kept up.
    pub produced_per_second: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleUsage {
    pub role: String,
    pub peak_rss_mib: f64,
    /// CPU seconds over the full-speed run, per 1,000 deliveries.
    pub cpu_ms_per_1000_deliveries: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    /// The broker and the stores it ran on.
    pub stack: String,
    /// The directory's loading, through `herald directory import`'s path.
    pub loaded: Loaded,
    pub users: usize,
    pub devices: usize,
    pub consumers: ConsumerTuning,
    pub raw_copy_records_per_second: f64,
    pub full_speed: FullSpeed,
    pub rates: Vec<RateRun>,
    pub roles: Vec<RoleUsage>,
}

/// `sent` events as they arrive: notification id and when the provider's answer was
/// recorded.
#[derive(Clone, Default)]
struct Sent(Arc<Mutex<Vec<(String, i64)>>>);

impl Sent {
    fn count_of(&self, prefix: &str) -> usize {
        self.0
            .lock()
            .map(|s| s.iter().filter(|(id, _)| id.starts_with(prefix)).count())
            .unwrap_or(0)
    }

    fn of(&self, prefix: &str) -> Vec<(String, i64)> {
        self.0
            .lock()
            .map(|s| s.iter().filter(|(id, _)| id.starts_with(prefix)).cloned().collect())
            .unwrap_or_default()
    }
}

/// Reads `herald.events` from the start into `sent` until the token is cancelled.
fn watch_events(
    config: &HeraldConfig,
    codec: Arc<AvroCodec>,
    sent: Sent,
    stop: tokio_util::sync::CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let events = config.kafka.topics().events();
    let consumer = reader_from_start(config, "herald-bench-e2e-events", &events)?;
    Ok(tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => return,
                m = consumer.recv() => m,
            };
            let Ok(message) = message else { continue };
            let Ok(event) = codec.decode::<DeliveryEvent>(message.payload()).await else {
                continue;
            };
            if event.kind == EventKind::Sent
                && let Ok(mut s) = sent.0.lock()
            {
                s.push((event.notification_id, event.occurred_at));
            }
        }
    }))
}

/// Produces requests `range` with ids starting `prefix`, at `rate` per second (all at once
/// when `None`); returns each id's acceptance time.
async fn produce(
    output: &AvroProducer,
    topic: &str,
    prefix: &str,
    range: std::ops::Range<usize>,
    users: usize,
    rate: Option<u32>,
) -> anyhow::Result<HashMap<String, i64>> {
    let mut accepted = HashMap::with_capacity(range.len());
    let mut acks = Vec::new();
    let started = Instant::now();
    for (n, i) in range.enumerate() {
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(n as f64 / f64::from(rate.max(1)));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
            }
        }
        let mut r = request(i, users);
        r.notification_id = format!("{prefix}{i}");
        r.accepted_at = herald_schemas::now_millis();
        accepted.insert(r.notification_id.clone(), r.accepted_at);
        acks.push(output.enqueue(topic, r.partition_key(), &r, None).await?);
        if acks.len() >= 2_000 {
            wait_all(std::mem::take(&mut acks)).await?;
        }
    }
    wait_all(acks).await?;
    Ok(accepted)
}

/// Waits until `expected` deliveries of ids starting `prefix` were sent.
async fn wait_for(
    sent: &Sent,
    prefix: &str,
    expected: usize,
    roles: &mut [(String, Child)],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let done = sent.count_of(prefix);
        if done >= expected {
            return Ok(());
        }
        for (role, child) in roles.iter_mut() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("{role} exited ({status}) with {done} of {expected} delivered");
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "{done} of {expected} delivered in 15 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn e2e(options: E2eOptions, tuning: &HeraldConfig) -> anyhow::Result<E2eReport> {
    in_temp_dir("herald-bench-e2e", |dir| async move { run(&options, tuning, &dir).await }).await
}

async fn run(options: &E2eOptions, tuning: &HeraldConfig, dir: &Path) -> anyhow::Result<E2eReport> {
    let stack = Stack::start(&options.stack, tuning, dir, ("benche2e.", options.users)).await?;
    let result = run_on(&stack, options, dir).await;
    stack.stop().await;
    result
}

async fn run_on(stack: &Stack, options: &E2eOptions, dir: &Path) -> anyhow::Result<E2eReport> {
    let mut config = stack.config.clone();
    // Tansu answers a fetch with no records ready only when its wait runs out, even if
    // records arrive meanwhile; Kafka answers as soon as they arrive. With librdkafka's
    // 500 ms every hop would add up to half a second on Tansu: latency would measure that.
    // A configuration's own value wins: on Kafka, how often the consumers fetch is what the
    // broker spends its CPU on.
    config
        .kafka
        .consumer
        .properties
        .entry("fetch.wait.max.ms".into())
        .or_insert_with(|| FETCH_WAIT_MS.into());
    let limits =
        ProviderLimits { concurrency: 256, timeout_ms: 30_000, ..ProviderLimits::default() };
    let mut standins = Vec::new();
    for kind in ["sendgrid", "apns", "fcm"] {
        let (standin, settings) = stand_in(kind, dir, &limits, options.latency).await?;
        let provider = BenchProvider::of(kind, &settings)?;
        standins.push(standin);
        config.dispatch.providers.insert(provider.name().into(), settings);
        config.dispatch.routes.insert(
            provider.channel().as_str().into(),
            BTreeMap::from([("default".to_owned(), vec![provider.name().to_owned()])]),
        );
    }
    config.validate()?;
    let consumers = config.kafka.consumer.clone();
    let mut specs = config.topic_specs();
    if let Some(template) = specs.first().cloned() {
        for name in ["bench.source", "bench.copy"] {
            let name = format!("{}{name}", config.kafka.topic_prefix);
            specs.push(herald_runtime::kafka::admin::TopicSpec { name, ..template.clone() });
        }
    }
    admin::create_topics(&config.kafka, &specs).await?;
    progress(&format!("loading {} users", options.users));
    let loaded = stack.load_directory(dir, options.users).await?;

    // The limit, before any role runs.
    let output = roles::output(&config, "herald-bench")?;
    let prefix = &config.kafka.topic_prefix;
    let (source, copy) = (format!("{prefix}bench.source"), format!("{prefix}bench.copy"));
    produce(&output, &source, "copy-", 0..options.requests, options.users, None).await?;
    progress("raw copy");
    let copied = copy_records(&config, &source, &copy, options.requests).await?;
    let limit = options.requests as f64 / copied.seconds.max(1e-9);

    let config_file = dir.join("herald.toml");
    std::fs::write(&config_file, toml::to_string(&config).context("writing the configuration")?)?;
    let mut processes: Vec<(String, Child)> = Vec::new();
    let mut roles_args: Vec<(String, Vec<&str>)> = vec![("enricher".into(), vec!["enrich"])];
    for channel in [Channel::Email, Channel::Ios, Channel::Android] {
        roles_args
            .push((format!("dispatch-{channel}"), vec!["dispatch", "--channel", channel.as_str()]));
    }
    for (role, args) in roles_args {
        let child = spawn_role(&config_file, &args, &dir.join(format!("{role}.log")))?;
        processes.push((role, child));
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let sent = Sent::default();
    let watcher = watch_events(&config, output.codec_handle(), sent.clone(), stop.clone())?;
    let mut others: Vec<(String, Option<u32>)> =
        stack.processes().into_iter().map(|(name, pid)| (name, Some(pid))).collect();
    others.push(("bench: producer, stand-ins".to_owned(), Some(std::process::id())));
    let run = Run { config: &config, output: &output, sent: &sent, warmup: stack.warmup };
    let result = measure(options, &run, &mut processes, limit, &others).await;
    stop.cancel();
    let _ = watcher.await;
    for (_, child) in &mut processes {
        let _ = child.kill();
        let _ = child.wait();
    }
    drop(standins);
    result.map(|(full_speed, rates, roles)| E2eReport {
        stack: stack.describe(),
        users: options.users,
        devices: loaded.devices,
        loaded,
        consumers,
        raw_copy_records_per_second: limit,
        full_speed,
        rates,
        roles,
    })
}

/// What a measured run works with.
struct Run<'a> {
    config: &'a HeraldConfig,
    output: &'a AvroProducer,
    sent: &'a Sent,
    /// How long the pipeline runs at full speed before anything is measured.
    warmup: Duration,
}

/// The pipeline at full speed for `run.warmup`, on other users than the measured requests
/// (from index `first` on): Apache Kafka's JIT compiler works on the paths the roles' traffic
/// takes for a while after it starts, which a broker users run did long ago.
async fn warm_up(
    run: &Run<'_>,
    topic: &str,
    (first, users): (usize, usize),
    processes: &mut [(String, Child)],
) -> anyhow::Result<()> {
    if run.warmup.is_zero() {
        return Ok(());
    }
    progress(&format!("warm-up: the pipeline at full speed for {} s", run.warmup.as_secs()));
    const BATCH: usize = 2_000;
    let started = Instant::now();
    let mut next = first;
    let mut expected = 0;
    while started.elapsed() < run.warmup {
        produce(run.output, topic, "warmup-", next..next + BATCH, users, None).await?;
        expected += (next..next + BATCH).map(|i| targets(i, users)).sum::<usize>();
        wait_for(run.sent, "warmup-", expected, processes).await?;
        next += BATCH;
    }
    Ok(())
}

async fn measure(
    options: &E2eOptions,
    run: &Run<'_>,
    processes: &mut [(String, Child)],
    limit: f64,
    others: &[(String, Option<u32>)],
) -> anyhow::Result<(FullSpeed, Vec<RateRun>, Vec<RoleUsage>)> {
    let (config, output, sent) = (run.config, run.output, run.sent);
    let topic = config.kafka.topics().requests_in(Lane::Urgent);
    let users = options.users;
    progress("starting the roles");
    // Every group joined and every provider connection open.
    produce(output, &topic, "warm-", 0..20, users, None).await?;
    wait_for(sent, "warm-", (0..20).map(|i| targets(i, users)).sum(), processes).await?;
    warm_up(run, &topic, (options.requests, users), processes).await?;

    progress(&format!("full speed: {} requests", options.requests));
    // Every process of the run: the roles, the broker and this one.
    let pids = |processes: &[(String, Child)]| -> Vec<(String, u32)> {
        let roles = processes.iter().map(|(role, child)| (role.clone(), child.id()));
        let rest = others.iter().filter_map(|(name, pid)| pid.map(|pid| (name.clone(), pid)));
        roles.chain(rest).collect()
    };
    let cpu_before: Vec<f64> =
        pids(processes).iter().map(|(_, pid)| process_usage(*pid).0).collect();
    let started = Instant::now();
    let n = options.requests;
    produce(output, &topic, "full-", 0..n, users, None).await?;
    let expected: usize = (0..n).map(|i| targets(i, users)).sum();
    wait_for(sent, "full-", expected, processes).await?;
    let seconds = started.elapsed().as_secs_f64();
    let deliveries_per_second = expected as f64 / seconds;
    let full_speed = FullSpeed {
        requests: n,
        deliveries: expected,
        seconds,
        requests_per_second: n as f64 / seconds,
        deliveries_per_second,
        of_raw_copy: deliveries_per_second / limit.max(1e-9),
    };
    let roles = pids(processes)
        .into_iter()
        .zip(cpu_before)
        .map(|((role, pid), before)| {
            let (cpu, rss) = process_usage(pid);
            RoleUsage {
                role,
                peak_rss_mib: rss,
                cpu_ms_per_1000_deliveries: (cpu - before) * 1_000_000.0 / expected.max(1) as f64,
            }
        })
        .collect();

    let mut rates = Vec::new();
    for rate in &options.rates {
        let count = usize::try_from(u64::from(*rate) * options.rate_seconds).unwrap_or(usize::MAX);
        let prefix = format!("rate{rate}-");
        progress(&format!("{rate} requests/s for {} s", options.rate_seconds));
        let started = Instant::now();
        let accepted = produce(output, &topic, &prefix, 0..count, users, Some(*rate)).await?;
        let produced_per_second = count as f64 / started.elapsed().as_secs_f64();
        let expected: usize = (0..count).map(|i| targets(i, users)).sum();
        wait_for(sent, &prefix, expected, processes).await?;
        let mut latencies: Vec<f64> = sent
            .of(&prefix)
            .into_iter()
            .filter_map(|(id, at)| accepted.get(&id).map(|from| (at - from) as f64))
            .collect();
        latencies.sort_by(f64::total_cmp);
        rates.push(RateRun {
            rate: *rate,
            requests: count,
            deliveries: latencies.len(),
            produced_per_second,
            p50_ms: percentile(&latencies, 0.50).unwrap_or(0.0),
            p95_ms: percentile(&latencies, 0.95).unwrap_or(0.0),
            p99_ms: percentile(&latencies, 0.99).unwrap_or(0.0),
            max_ms: latencies.last().copied().unwrap_or(0.0),
        });
    }
    Ok((full_speed, rates, roles))
}

pub fn render(report: &E2eReport, options: &E2eOptions) -> String {
    let f = &report.full_speed;
    let mut out = format!(
        "{}\n{} users ({} devices) loaded in {:.1} s; providers answer after {:?}; consumers' fetch.wait.max.ms {}\n{}\n\n",
        report.stack,
        report.users,
        report.devices,
        report.loaded.seconds,
        options.latency,
        report.consumers.properties.get("fetch.wait.max.ms").map_or(FETCH_WAIT_MS, String::as_str),
        crate::bench::enrich::describe_consumers(&report.consumers)
    );
    out.push_str(&format!(
        "raw copy (the limit)  {:>8.0} records/s\n\nfull speed            {} requests, {} deliveries in {:.1} s\n  requests/s          {:>8.0}\n  deliveries/s        {:>8.0}  ({:.0}% of the raw copy's records/s)\n\n",
        report.raw_copy_records_per_second, f.requests, f.deliveries, f.seconds,
        f.requests_per_second, f.deliveries_per_second, 100.0 * f.of_raw_copy
    ));
    out.push_str(
        "fixed rate    produced/s  deliveries     p50 ms     p95 ms     p99 ms     max ms\n",
    );
    for r in &report.rates {
        out.push_str(&format!(
            "{:>6}/s     {:>10.0}  {:>10}  {:>9.0}  {:>9.0}  {:>9.0}  {:>9.0}\n",
            r.rate, r.produced_per_second, r.deliveries, r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms
        ));
    }
    out.push_str(
        "\nprocess                      peak RSS MiB   CPU ms per 1000 deliveries (full speed)\n",
    );
    for r in &report.roles {
        out.push_str(&format!(
            "{:<28} {:>12.0}   {:>10.1}\n",
            r.role, r.peak_rss_mib, r.cpu_ms_per_1000_deliveries
        ));
    }
    out.push_str("\nlatency: acceptance to the `sent` event, written once the provider answered and the ledger recorded it\n");
    out
}
