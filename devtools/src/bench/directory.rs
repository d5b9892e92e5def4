//! `herald bench directory`: the directory's two ways in, against the broker's limit. One
//! run on one broker: a raw consume→produce copy of the change records (the limit); a file
//! of N users and their devices imported through `herald.directory.changes` and applied by
//! `herald enrich` (its own process): changes applied per second; then devices registered
//! through the directory API (`herald ingest`, its own process) by concurrent callers, each
//! answered once applied: registrations per second and their latency.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_enricher::{DirectoryBackend, ScyllaDirectory, SqliteDirectory};
use herald_runtime::kafka::{Producer, admin, wait_all};
use serde::Serialize;

use super::enrich::{copy_records, in_temp_dir, process_usage, warm_up_broker};
use super::stack::{Killed, Stack, StackArgs, spawn_role, write_directory};
use herald_wiring::config::HeraldConfig;
use herald_wiring::directory::{ImportFormat, ImportOptions};

#[derive(Debug, Clone)]
pub struct DirectoryBenchOptions {
    pub users: usize,
    /// How long the API is called for.
    pub seconds: u64,
    /// Callers at once.
    pub connections: usize,
    pub stack: StackArgs,
}

#[derive(Debug, Clone, Serialize)]
pub struct DirectoryRow {
    /// raw_copy, topic (changes applied from the topic), api (device registrations answered
    /// once applied) or api_durable (answered once durable).
    pub run: &'static str,
    pub operations: usize,
    pub seconds: f64,
    pub per_second: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// The enricher's (and for the API, ingest's too) CPU per 1,000 operations.
    pub cpu_ms_per_1000: Option<f64>,
    /// Answers other than the run's (201, or 202 once durable).
    pub refused: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct DirectoryBenchReport {
    pub stack: String,
    pub users: usize,
    pub devices: usize,
    pub connections: usize,
    pub rows: Vec<DirectoryRow>,
}

pub async fn directory(
    options: DirectoryBenchOptions,
    tuning: &HeraldConfig,
) -> anyhow::Result<DirectoryBenchReport> {
    in_temp_dir("herald-bench-directory", |dir| async move {
        let stack =
            Stack::start(&options.stack, tuning, &dir, ("benchdir.", options.users)).await?;
        let result = run_on(&stack, &options, &dir).await;
        stack.stop().await;
        result
    })
    .await
}

async fn run_on(
    stack: &Stack,
    options: &DirectoryBenchOptions,
    dir: &Path,
) -> anyhow::Result<DirectoryBenchReport> {
    let mut config = stack.config.clone();
    let api_port = herald_testkit::free_port()?;
    config.ingest.listen = format!("127.0.0.1:{api_port}").parse()?;
    config.ingest.store_path = dir.join("ingest.db");
    // The enricher's metrics, for a look while it runs (the log names the port).
    let ops_port = herald_testkit::free_port()?;
    config.ops.listen = Some(format!("127.0.0.1:{ops_port}").parse()?);
    super::progress(&format!("the enricher's metrics: http://127.0.0.1:{ops_port}/metrics"));
    config.validate()?;
    let topics = config.kafka.topics();
    let (scratch, copy) =
        (format!("{}bench.scratch", topics.prefix()), format!("{}bench.copy", topics.prefix()));
    let mut specs = config.topic_specs();
    if let Some(template) = specs.iter().find(|s| s.name == topics.requests()).cloned() {
        for name in [&scratch, &copy] {
            specs.push(admin::TopicSpec { name: name.clone(), ..template.clone() });
        }
    }
    admin::create_topics(&config.kafka, &specs).await?;
    let file = dir.join("directory.jsonl");
    let devices = write_directory(&file, options.users).context("writing the directory file")?;
    let records = options.users + devices;

    // The broker's own paths compiled (Kafka's JIT) on records like the changes.
    produce_scratch(&config, &scratch, &file, records).await?;
    warm_up_broker(&config, (&scratch, &copy), records, stack.warmup).await?;

    let config_file = dir.join("herald.toml");
    std::fs::write(&config_file, toml::to_string(&config).context("writing the configuration")?)?;
    let enricher = Killed(spawn_role(&config_file, &["enrich"], &dir.join("enrich.log"))?);
    let mut report = DirectoryBenchReport {
        stack: stack.describe(),
        users: options.users,
        devices,
        connections: options.connections,
        rows: Vec::new(),
    };
    super::progress(&format!("importing {records} records through the changes topic"));
    report.rows.push(import_through_topic(&config, &file, enricher.0.id(), records).await?);
    super::progress("the raw copy of the change records");
    let copied = copy_records(&config, &topics.directory_changes(), &copy, records).await?;
    report.rows.insert(
        0,
        DirectoryRow {
            run: "raw_copy",
            operations: records,
            seconds: copied.seconds,
            per_second: records as f64 / copied.seconds,
            p50_ms: None,
            p95_ms: None,
            p99_ms: None,
            cpu_ms_per_1000: Some(copied.cpu_seconds * 1_000_000.0 / records as f64),
            refused: 0,
        },
    );

    let stores = herald_ingest::IngestStores::open(&config.ingest).await?;
    let policy = herald_ingest::ClientPolicy {
        directory: Some(herald_ingest::DirectoryAccess::Write),
        ..herald_ingest::ClientPolicy::default()
    };
    let (_, key) = stores.clients.add_with("bench", policy).await?;
    let ingest = Killed(spawn_role(&config_file, &["ingest"], &dir.join("ingest.log"))?);
    let api = format!("http://127.0.0.1:{api_port}");
    wait_for_api(&api).await?;
    super::progress(&format!(
        "registering devices through the API for {} s, {} callers",
        options.seconds, options.connections
    ));
    let pids = [enricher.0.id(), ingest.0.id()];
    report.rows.push(register_devices(&api, &key, options, (pids, Answered::Applied)).await?);
    super::progress("again, each answered once durable (Prefer: respond-async)");
    report.rows.push(register_devices(&api, &key, options, (pids, Answered::Durable)).await?);
    drop((ingest, enricher));
    Ok(report)
}

/// The file's records, as JSON, on the scratch topic: the warm-up copies them.
async fn produce_scratch(
    config: &HeraldConfig,
    topic: &str,
    file: &Path,
    records: usize,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let producer = Producer::new(&config.kafka, "herald-bench-scratch")?;
    let mut acks = Vec::new();
    let lines = std::io::BufReader::new(std::fs::File::open(file)?).lines();
    for line in lines.take(records) {
        let line = line?;
        acks.push(producer.enqueue(topic, Some(b"scratch"), line.as_bytes(), None).await?);
        if acks.len() >= 5_000 {
            wait_all(std::mem::take(&mut acks)).await?;
        }
    }
    wait_all(acks).await?;
    Ok(())
}

/// `herald directory import` of `file` through the changes topic, waiting for the enricher
/// (`enricher`, its pid) to apply it all.
async fn import_through_topic(
    config: &HeraldConfig,
    file: &Path,
    enricher: u32,
    records: usize,
) -> anyhow::Result<DirectoryRow> {
    let writer = herald_wiring::directory::writer(config).await?;
    let options = ImportOptions { format: ImportFormat::Jsonl, kind: None };
    let hidden = indicatif::ProgressBar::hidden();
    let cpu_before = process_usage(enricher).0;
    let started = Instant::now();
    let enrich = &config.enricher;
    let report = match enrich.directory_backend {
        DirectoryBackend::Sqlite => {
            let store = Arc::new(SqliteDirectory::open(&enrich.directory_path)?);
            herald_wiring::directory::import(store, &writer, file, options, &hidden, true).await?
        }
        DirectoryBackend::Scylla => {
            let store = Arc::new(ScyllaDirectory::connect(&enrich.scylla).await?);
            herald_wiring::directory::import(store, &writer, file, options, &hidden, true).await?
        }
    };
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    anyhow::ensure!(report.refused_total == 0, "the directory file has refused records");
    anyhow::ensure!(report.imported() == records, "imported {} of {records}", report.imported());
    let cpu = process_usage(enricher).0 - cpu_before;
    Ok(DirectoryRow {
        run: "topic",
        operations: records,
        seconds,
        per_second: records as f64 / seconds,
        p50_ms: None,
        p95_ms: None,
        p99_ms: None,
        cpu_ms_per_1000: Some(cpu * 1_000_000.0 / records as f64),
        refused: 0,
    })
}

async fn wait_for_api(api: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{api}/healthz")).await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "herald ingest did not answer at {api}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// When the API answers a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    /// Once the enricher applied it (the default).
    Applied,
    /// Once it is durable (`Prefer: respond-async`).
    Durable,
}

/// Every caller registers a new device of the next user, over and over, for the run's
/// time after a short warm-up.
async fn register_devices(
    api: &str,
    key: &str,
    options: &DirectoryBenchOptions,
    (pids, answered): ([u32; 2], Answered),
) -> anyhow::Result<DirectoryRow> {
    let (expected, prefer) = match answered {
        Answered::Applied => (201, ""),
        Answered::Durable => (202, "respond-async"),
    };
    let http = reqwest::Client::builder().pool_max_idle_per_host(options.connections).build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let warmup = Duration::from_secs(2);
    let started = Instant::now();
    let measured_from = started + warmup;
    let until = measured_from + Duration::from_secs(options.seconds);
    let cpu_at = |pids: [u32; 2]| pids.iter().map(|pid| process_usage(*pid).0).sum::<f64>();
    let callers = (0..options.connections).map(|_| {
        let (http, next, api, key) =
            (http.clone(), Arc::clone(&next), api.to_owned(), key.to_owned());
        let users = options.users;
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut refused = 0;
            while Instant::now() < until {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let url = format!("{api}/v1/users/u{}/devices/bench-{n}", n % users);
                let body =
                    serde_json::json!({"platform": "android", "token": format!("bench-token-{n}")});
                let sent = Instant::now();
                let mut request = http.put(&url).bearer_auth(&key).json(&body);
                if !prefer.is_empty() {
                    request = request.header("prefer", prefer);
                }
                let status = request.send().await.map(|a| a.status().as_u16()).unwrap_or(0);
                if sent >= measured_from {
                    latencies.push(sent.elapsed().as_secs_f64() * 1_000.0);
                    if status != expected {
                        refused += 1;
                    }
                }
            }
            (latencies, refused)
        })
    });
    let callers: Vec<_> = callers.collect();
    tokio::time::sleep_until(measured_from.into()).await;
    let cpu_before = cpu_at(pids);
    let mut latencies = Vec::new();
    let mut refused = 0;
    for caller in callers {
        let (mine, not_created) = caller.await?;
        latencies.extend(mine);
        refused += not_created;
    }
    let seconds = measured_from.elapsed().as_secs_f64();
    let cpu = cpu_at(pids) - cpu_before;
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let index = ((latencies.len() as f64 * q).ceil() as usize).saturating_sub(1);
        latencies.get(index).copied()
    };
    let operations = latencies.len();
    Ok(DirectoryRow {
        run: if answered == Answered::Applied { "api" } else { "api_durable" },
        operations,
        seconds,
        per_second: operations as f64 / seconds,
        p50_ms: at(0.50),
        p95_ms: at(0.95),
        p99_ms: at(0.99),
        cpu_ms_per_1000: Some(cpu * 1_000_000.0 / operations.max(1) as f64),
        refused,
    })
}

pub fn render(report: &DirectoryBenchReport) -> String {
    let mut out = format!(
        "{}\n{} users ({} devices) imported through herald.directory.changes; API: {} callers, a registration answered once applied, or once durable (Prefer: respond-async)\n\n",
        report.stack, report.users, report.devices, report.connections
    );
    out.push_str("run                          per second   p50 ms   p95 ms   p99 ms  CPU ms/1000  refused\n");
    let names = |run: &str| match run {
        "raw_copy" => "raw copy (records)",
        "topic" => "changes applied from topic",
        "api" => "devices registered (API)",
        _ => "same, answered once durable",
    };
    for r in &report.rows {
        let opt = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |v| format!("{v:.1}"));
        out.push_str(&format!(
            "{:<28} {:>10.0}  {:>7}  {:>7}  {:>7}  {:>11}  {:>7}\n",
            names(r.run),
            r.per_second,
            opt(r.p50_ms),
            opt(r.p95_ms),
            opt(r.p99_ms),
            opt(r.cpu_ms_per_1000),
            r.refused,
        ));
    }
    out.push_str("\nCPU: the enricher's for the topic, the enricher's and ingest's for the API; the broker is co-located\n");
    out
}
