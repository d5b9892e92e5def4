//! `herald bench enrich`: the enricher against the limit of the broker it runs on. One run
//! on one embedded Tansu: a raw consume→produce copy of the request records (rdkafka, no
//! processing) gives the limit; then `herald enrich`, as its own process, fans the same
//! requests out to a directory of N users, first with a cold cache and then warm. The
//! enricher process's CPU time and peak RSS come from /proc.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_runtime::config::ConsumerTuning;
use herald_runtime::kafka::{Producer, admin, wait_all};
use herald_schemas::{Channel, EmailContent, Lane, NotificationRequest, PushContent, Recipient};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message};
use serde::Serialize;

use super::stack::{Loaded, Stack, StackArgs, spawn_role};
use herald_wiring::config::HeraldConfig;
use herald_wiring::roles;

#[derive(Debug, Clone)]
pub struct EnrichBenchOptions {
    pub users: usize,
    pub requests: usize,
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrichRow {
    /// raw_copy, enricher_cold or enricher_warm.
    pub run: &'static str,
    pub requests: usize,
    pub seconds: f64,
    pub requests_per_second: f64,
    /// Records consumed plus records produced.
    pub records_moved: u64,
    pub records_moved_per_second: f64,
    /// Channel messages per request (the fan-out).
    pub targets_per_request: Option<f64>,
    /// The enricher process's user + system CPU per 1,000 requests.
    pub cpu_ms_per_1000_requests: Option<f64>,
    pub peak_rss_mib: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EnrichBenchReport {
    /// The broker and the stores it ran on.
    pub stack: String,
    /// The directory's loading, through `herald directory import`'s path.
    pub loaded: Loaded,
    pub users: usize,
    pub devices: usize,
    /// The consumer settings the benchmarked roles ran with (from `--config` or defaults).
    pub consumers: ConsumerTuning,
    pub rows: Vec<EnrichRow>,
}

/// The consumer settings a benchmark's roles ran with, for its report's first line.
pub(crate) fn describe_consumers(consumers: &ConsumerTuning) -> String {
    format!(
        "consumers: {} key queues per partition, {} records in flight",
        consumers.key_queues_per_partition, consumers.max_in_flight
    )
}

pub(crate) fn request(i: usize, users: usize) -> NotificationRequest {
    // A multiplicative walk over the users: spread, repeatable, every request a new user
    // until the directory is exhausted.
    let user = (i.wrapping_mul(7_919)) % users.max(1);
    NotificationRequest {
        notification_id: format!("bench-{}-{i}", herald_schemas::now_millis()),
        accepted_at: herald_schemas::now_millis(),
        recipient: Recipient { user_id: Some(format!("u{user}")), ..Recipient::default() },
        category: "transactional".into(),
        email: Some(EmailContent {
            subject: "Your order shipped".into(),
            text: Some("It is on its way.".into()),
            html: None,
        }),
        push: Some(PushContent {
            title: Some("Shipped".into()),
            body: "Your order is on its way.".into(),
            data: [("order".to_owned(), i.to_string())].into(),
        }),
        ..NotificationRequest::default()
    }
}

async fn produce_requests(
    config: &HeraldConfig,
    options: &EnrichBenchOptions,
) -> anyhow::Result<()> {
    let output = roles::output(config, "herald-bench")?;
    let topic = config.kafka.topics().requests_in(Lane::Urgent);
    let mut acks = Vec::new();
    for i in 0..options.requests {
        let r = request(i, options.users);
        acks.push(output.enqueue(&topic, r.partition_key(), &r, None).await?);
        if acks.len() >= 5_000 {
            wait_all(std::mem::take(&mut acks)).await?;
        }
    }
    wait_all(acks).await?;
    Ok(())
}

/// How a raw copy went: its duration and this process's CPU time.
pub(crate) struct Copied {
    pub seconds: f64,
    pub cpu_seconds: f64,
}

/// The limit: `records` records of `from` consumed and produced to `to`, untouched.
pub(crate) async fn copy_records(
    config: &HeraldConfig,
    from: &str,
    to: &str,
    records: usize,
) -> anyhow::Result<Copied> {
    let consumer = reader_from_start(config, "herald-bench-copy", from)?;
    let producer = Producer::new(&config.kafka, "herald-bench-copy")?;
    let cpu_before = process_usage(std::process::id()).0;
    // From the first record read, as the enricher is timed from its first output: joining
    // the group and the broker's first fetch are not the copy's speed.
    let mut started = None;
    let mut acks = Vec::new();
    for _ in 0..records {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .context("copy stalled")??;
        started.get_or_insert_with(Instant::now);
        let payload = message.payload().unwrap_or_default();
        acks.push(producer.enqueue(to, message.key(), payload, None).await?);
        if acks.len() >= 5_000 {
            wait_all(std::mem::take(&mut acks)).await?;
        }
    }
    wait_all(acks).await?;
    let seconds = started.map_or(0.0, |at| at.elapsed().as_secs_f64()).max(1e-9);
    // This process also serves the schema registry, idle by now.
    let cpu_seconds = process_usage(std::process::id()).0 - cpu_before;
    Ok(Copied { seconds, cpu_seconds })
}

/// A consumer of `topic` from its first record, in `group`, committing nothing.
pub(crate) fn reader_from_start(
    config: &HeraldConfig,
    group: &str,
    topic: &str,
) -> anyhow::Result<StreamConsumer> {
    let mut client = ClientConfig::new();
    for (key, value) in config.kafka.client_properties()? {
        client.set(key, value);
    }
    let consumer: StreamConsumer = client
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    consumer.subscribe(&[topic])?;
    Ok(consumer)
}

/// Copies `records` records of `from` to `to` over and over for `warmup`: the broker's
/// code paths compiled before anything is measured.
pub(crate) async fn warm_up_broker(
    config: &HeraldConfig,
    (from, to): (&str, &str),
    records: usize,
    warmup: Duration,
) -> anyhow::Result<()> {
    if warmup.is_zero() {
        return Ok(());
    }
    crate::bench::progress(&format!("warming the broker up for {} s", warmup.as_secs()));
    let started = Instant::now();
    while started.elapsed() < warmup {
        copy_records(config, from, to, records).await?;
    }
    Ok(())
}

/// The raw copy of the request records, as a row.
async fn raw_copy(config: &HeraldConfig, records: usize) -> anyhow::Result<EnrichRow> {
    let topics = config.kafka.topics();
    let (from, to) = (topics.requests(), format!("{}bench.copy", topics.prefix()));
    let copied = copy_records(config, &from, &to, records).await?;
    let seconds = copied.seconds;
    let moved = 2 * records as u64;
    Ok(EnrichRow {
        run: "raw_copy",
        requests: records,
        seconds,
        requests_per_second: records as f64 / seconds,
        records_moved: moved,
        records_moved_per_second: moved as f64 / seconds,
        targets_per_request: None,
        cpu_ms_per_1000_requests: Some(copied.cpu_seconds * 1_000_000.0 / records as f64),
        peak_rss_mib: None,
    })
}

/// User + system CPU seconds and peak RSS (MiB) of process `pid`.
pub(crate) fn process_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // After "pid (comm)": state is field 3; utime and stime are fields 14 and 15, in clock
    // ticks of 1/100 s on Linux.
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, kib / 1024.0)
}

/// The topics the enricher writes, and one client (made once) to read their depth.
struct Outputs {
    probe: rdkafka::consumer::BaseConsumer,
    topics: Vec<String>,
}

impl Outputs {
    fn new(config: &HeraldConfig) -> anyhow::Result<Self> {
        let names = config.kafka.topics();
        let mut topics = vec![names.events()];
        for channel in Channel::ALL {
            topics.extend(Lane::ALL.map(|lane| names.channel_in(channel, lane)));
        }
        Ok(Self { probe: herald_wiring::groups::probe(&config.kafka)?, topics })
    }

    /// Records in every topic the enricher writes.
    fn produced(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for topic in &self.topics {
            total += admin::topic_depth(&self.probe, topic)?;
        }
        Ok(u64::try_from(total).unwrap_or(0))
    }
}

/// Records one pass of the requests makes the enricher produce: per target (every device
/// and the email address) a channel message and a `routed` event.
fn expected_outputs(options: &EnrichBenchOptions) -> u64 {
    (0..options.requests).map(|i| 2 * targets(i, options.users) as u64).sum()
}

/// Deliveries request `i` makes: its user's address and every device (see
/// [`super::stack::user`] and [`request`]).
pub(crate) fn targets(i: usize, users: usize) -> usize {
    let user = (i.wrapping_mul(7_919)) % users.max(1);
    1 + user % 3 + 1
}

/// Where the enricher stood at one moment.
struct Mark {
    at: Instant,
    cpu_seconds: f64,
    produced: u64,
}

/// Waits until the enricher has produced at least `target` records in all.
async fn mark_at(outputs: &Outputs, target: u64, child: &mut Child) -> anyhow::Result<Mark> {
    let deadline = Instant::now() + Duration::from_secs(900);
    loop {
        let produced = outputs.produced()?;
        if produced >= target {
            let cpu_seconds = process_usage(child.id()).0;
            return Ok(Mark { at: Instant::now(), cpu_seconds, produced });
        }
        if let Some(status) = child.try_wait()? {
            anyhow::bail!("herald enrich exited ({status}) after producing {produced} records");
        }
        anyhow::ensure!(Instant::now() < deadline, "the enricher produced {produced} of {target}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub async fn enrich(
    options: EnrichBenchOptions,
    tuning: &HeraldConfig,
) -> anyhow::Result<EnrichBenchReport> {
    in_temp_dir("herald-bench-enrich", |dir| async move { run(&options, tuning, &dir).await }).await
}

/// Runs `work` in a new directory under the system's temporary one, removed afterwards.
pub(crate) async fn in_temp_dir<T, F, Fut>(name: &str, work: F) -> anyhow::Result<T>
where
    F: FnOnce(std::path::PathBuf) -> Fut,
    Fut: Future<Output = anyhow::Result<T>>,
{
    let dir = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = work(dir.clone()).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn run(
    options: &EnrichBenchOptions,
    tuning: &HeraldConfig,
    dir: &Path,
) -> anyhow::Result<EnrichBenchReport> {
    let stack = Stack::start(&options.stack, tuning, dir, ("benchenrich.", options.users)).await?;
    let result = run_on(&stack, options, dir).await;
    stack.stop().await;
    result
}

async fn run_on(
    stack: &Stack,
    options: &EnrichBenchOptions,
    dir: &Path,
) -> anyhow::Result<EnrichBenchReport> {
    let mut config = stack.config.clone();
    config.enricher.cache_ttl_ms = 3_600_000;
    config.ops.listen = Some("127.0.0.1:0".parse()?);
    // The enricher is stopped (SIGSTOP) while the warm pass is produced: long enough a
    // session that the broker keeps its partitions.
    config.kafka.consumer.session_timeout_ms = 60_000;
    config.kafka.consumer.max_poll_interval_ms = 120_000;
    config.validate()?;
    let mut specs = config.topic_specs();
    if let Some(copy) = specs.first().cloned() {
        let name = format!("{}bench.copy", config.kafka.topic_prefix);
        specs.push(herald_runtime::kafka::admin::TopicSpec { name, ..copy });
    }
    admin::create_topics(&config.kafka, &specs).await?;

    let loaded = stack.load_directory(dir, options.users).await?;
    produce_requests(&config, options).await?;
    let mut report = EnrichBenchReport {
        stack: stack.describe(),
        users: options.users,
        devices: loaded.devices,
        loaded,
        consumers: config.kafka.consumer.clone(),
        rows: Vec::new(),
    };
    let topics = config.kafka.topics();
    let copy = format!("{}bench.copy", topics.prefix());
    let route = (topics.requests(), copy);
    warm_up_broker(&config, (&route.0, &route.1), options.requests, stack.warmup).await?;
    report.rows.push(raw_copy(&config, options.requests).await?);

    let config_file = dir.join("herald.toml");
    std::fs::write(&config_file, toml::to_string(&config).context("writing the configuration")?)?;
    let mut child = spawn_role(&config_file, &["enrich"], &dir.join("enrich.log"))?;
    let result = enricher_runs(&config, options, &mut child, &mut report).await;
    let _ = child.kill();
    let _ = child.wait();
    result.map(|()| report)
}

async fn enricher_runs(
    config: &HeraldConfig,
    options: &EnrichBenchOptions,
    child: &mut Child,
    report: &mut EnrichBenchReport,
) -> anyhow::Result<()> {
    let pass = expected_outputs(options);
    // From the first output: the group join is not the enricher's speed.
    let outputs = Outputs::new(config)?;
    let first = mark_at(&outputs, 1, child).await?;
    let cold = mark_at(&outputs, pass, child).await?;
    // The same requests again, produced while the enricher is stopped, then timed from
    // its continuing: every lookup is now a cache hit.
    herald_testkit::signal(child.id(), "-STOP")?;
    let produced = produce_requests(config, options).await;
    herald_testkit::signal(child.id(), "-CONT")?;
    produced?;
    let resumed = mark_at(&outputs, cold.produced, child).await?;
    // From its first output again: a stopped consumer may have to rejoin its group. A pass
    // done between two looks (a short one, a fast broker) is timed from the resumption.
    let first_warm = mark_at(&outputs, cold.produced + 1, child).await?;
    let warm = mark_at(&outputs, 2 * pass, child).await?;
    let warm_start = if first_warm.produced < warm.produced { first_warm } else { resumed };
    for (run, from, to) in [("enricher_cold", &first, &cold), ("enricher_warm", &warm_start, &warm)]
    {
        let produced = to.produced.saturating_sub(from.produced);
        // Outputs tell how many requests a window covered (the first output's request is
        // counted whole).
        let requests = options.requests as f64 * produced as f64 / pass as f64;
        let seconds = to.at.duration_since(from.at).as_secs_f64().max(1e-9);
        let moved = produced as f64 + requests;
        report.rows.push(EnrichRow {
            run,
            requests: options.requests,
            seconds,
            requests_per_second: requests / seconds,
            records_moved: moved as u64,
            records_moved_per_second: moved / seconds,
            // Every target has one channel message and one routed event.
            targets_per_request: Some(produced as f64 / 2.0 / requests.max(1.0)),
            cpu_ms_per_1000_requests: Some(
                (to.cpu_seconds - from.cpu_seconds) * 1_000_000.0 / requests.max(1.0),
            ),
            peak_rss_mib: Some(process_usage(child.id()).1),
        });
    }
    Ok(())
}

pub fn render(report: &EnrichBenchReport) -> String {
    let limit =
        report.rows.iter().find(|r| r.run == "raw_copy").map(|r| r.records_moved_per_second);
    let l = &report.loaded;
    let mut out = format!(
        "{}\n{} users ({} devices) loaded in {:.1} s ({:.0} records/s, herald directory import's path); {} requests per run; {}\n\n",
        report.stack,
        report.users,
        report.devices,
        l.seconds,
        l.records_per_second,
        report.rows.first().map_or(0, |r| r.requests),
        describe_consumers(&report.consumers)
    );
    out.push_str(
        "run            requests/s  records moved/s  of raw copy  targets/req  CPU ms/1000 req  peak RSS MiB\n",
    );
    for r in &report.rows {
        let opt = |v: Option<f64>, digits: usize| {
            v.map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
        };
        let share = limit.map(|l| 100.0 * r.records_moved_per_second / l);
        out.push_str(&format!(
            "{:<14} {:>10.0}  {:>15.0}  {:>10}%  {:>11}  {:>15}  {:>12}\n",
            r.run,
            r.requests_per_second,
            r.records_moved_per_second,
            opt(share, 0),
            opt(r.targets_per_request, 2),
            opt(r.cpu_ms_per_1000_requests, 1),
            opt(r.peak_rss_mib, 0),
        ));
    }
    out.push_str("\nrecords moved = consumed + produced (channel messages and events); the broker is co-located\n");
    out
}
