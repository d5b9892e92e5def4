//! `herald bench ledger`: what the delivery ledger costs per delivery, on SQLite and on a CQL
//! node: a claim before the provider call and a completion after, for N distinct deliveries
//! with C under way at once, as a dispatcher's send slots make them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use herald_dispatchers::DeliveryLedger;
use herald_dispatchers::ledger::scylla::ScyllaLedger;
use herald_dispatchers::ledger::sqlite::SqliteLedger;
use herald_dispatchers::ledger::{Claim, Completion, DeliveryKey};
use herald_testkit::cql::{self, CassandraNode};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::dispatch::percentile;
use super::enrich::process_usage;
use super::stack::StoreChoice;

#[derive(Debug, Clone)]
pub struct LedgerBenchOptions {
    pub stores: Vec<StoreChoice>,
    pub deliveries: usize,
    pub concurrency: usize,
    /// A running CQL node (host:port); else Cassandra is started for the run.
    pub cql_node: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LedgerRow {
    pub store: String,
    pub deliveries: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub deliveries_per_second: f64,
    /// Claim plus completion of one delivery.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// This process's CPU (the ledger's client side) per 1,000 deliveries.
    pub cpu_ms_per_1000: f64,
    /// The CQL node's CPU per 1,000 deliveries, when it was started for the run.
    pub node_cpu_ms_per_1000: Option<f64>,
}

pub async fn ledger(options: LedgerBenchOptions) -> anyhow::Result<Vec<LedgerRow>> {
    super::enrich::in_temp_dir("herald-bench-ledger", |dir| async move {
        let mut rows = Vec::new();
        for store in &options.stores {
            rows.push(match store {
                StoreChoice::Sqlite => {
                    let ledger = SqliteLedger::open(dir.join("ledger.db"))?;
                    run("sqlite", Arc::new(ledger), &options, None).await?
                }
                StoreChoice::Cql => {
                    let started = match &options.cql_node {
                        Some(_) => None,
                        None => Some(CassandraNode::start(&dir.join("cassandra")).await?),
                    };
                    let keyspace = format!("bench_ledger_{}", std::process::id());
                    let config = match (&options.cql_node, &started) {
                        (_, Some(node)) => node.config(&keyspace),
                        (node, None) => cql::at(node.as_deref().unwrap_or_default(), &keyspace),
                    };
                    let session = config.connect_creating_keyspace().await?;
                    ScyllaLedger::create_table(&session, config.keyspace()?).await?;
                    let retention = Duration::from_secs(3600);
                    let ledger = ScyllaLedger::new(session, config.keyspace()?, retention).await?;
                    let pid = started.as_ref().and_then(CassandraNode::pid);
                    run("cql (cassandra)", Arc::new(ledger), &options, pid).await?
                }
            });
        }
        Ok(rows)
    })
    .await
}

async fn run<L: DeliveryLedger>(
    store: &str,
    ledger: Arc<L>,
    options: &LedgerBenchOptions,
    node: Option<u32>,
) -> anyhow::Result<LedgerRow> {
    let slots = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let run = format!("bench-{}", herald_schemas::now_millis());
    let cpu = |pid: Option<u32>| pid.map(|pid| process_usage(pid).0);
    let (own_before, node_before) = (cpu(Some(std::process::id())), cpu(node));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..options.deliveries {
        let permit = Arc::clone(&slots).acquire_owned().await?;
        let (ledger, run) = (Arc::clone(&ledger), run.clone());
        tasks.spawn(async move {
            let key = DeliveryKey {
                notification_id: format!("{run}-{i}"),
                channel: "email".into(),
                target: format!("u{i}@bench.test"),
            };
            let at = Instant::now();
            let now = herald_schemas::now_millis();
            let claimed = ledger.claim(&key, now, Duration::from_secs(30)).await?;
            anyhow::ensure!(claimed == Claim::Granted { took_over: false }, "{claimed:?}");
            ledger.complete(&key, Completion::Sent, now).await?;
            drop(permit);
            Ok(at.elapsed().as_secs_f64() * 1000.0)
        });
    }
    let mut latencies = Vec::with_capacity(options.deliveries);
    while let Some(done) = tasks.join_next().await {
        latencies.push(done??);
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    latencies.sort_by(f64::total_cmp);
    let per_1000 = |before: Option<f64>, pid: Option<u32>| {
        Some((cpu(pid)? - before?) * 1_000_000.0 / options.deliveries.max(1) as f64)
    };
    Ok(LedgerRow {
        store: store.to_owned(),
        deliveries: options.deliveries,
        concurrency: options.concurrency,
        seconds,
        deliveries_per_second: options.deliveries as f64 / seconds,
        p50_ms: percentile(&latencies, 0.50).unwrap_or(0.0),
        p99_ms: percentile(&latencies, 0.99).unwrap_or(0.0),
        cpu_ms_per_1000: per_1000(own_before, Some(std::process::id())).unwrap_or(0.0),
        node_cpu_ms_per_1000: per_1000(node_before, node),
    })
}

pub fn render(rows: &[LedgerRow]) -> String {
    let mut out = String::from(
        "store              deliveries  at once  deliveries/s  p50 ms  p99 ms  CPU ms/1000 (herald)  (node)\n",
    );
    for r in rows {
        let node = r.node_cpu_ms_per_1000.map_or_else(|| "-".to_owned(), |v| format!("{v:.0}"));
        out.push_str(&format!(
            "{:<18} {:>10}  {:>7}  {:>12.0}  {:>6.2}  {:>6.2}  {:>20.1}  {:>6}\n",
            r.store,
            r.deliveries,
            r.concurrency,
            r.deliveries_per_second,
            r.p50_ms,
            r.p99_ms,
            r.cpu_ms_per_1000,
            node
        ));
    }
    out.push_str("\na delivery = its claim before the provider call and its completion after\n");
    out
}
