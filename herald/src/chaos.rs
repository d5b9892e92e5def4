//! `herald chaos`: a fault run. Sends N notifications through the roles running as their own
//! processes (as `herald dev` would run them, but separately killable), while SIGKILLing the
//! enricher and dispatchers at random and letting the SMTP stand-in fail a share of
//! deliveries transiently. Then counts what arrived: sent, delivered, lost, duplicates,
//! dead-lettered, and the longest stretch without a delivery.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_ingest::ApiClients;
use herald_runtime::kafka::admin;
use herald_schemas::dev_registry::DevRegistry;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::config::HeraldConfig;
use crate::dev::mail_sink::{MailSink, SinkOptions};
use herald_testkit::{BrokerStorage, TansuBroker, free_port};

#[derive(Debug, Clone)]
pub struct ChaosOptions {
    pub notifications: usize,
    /// A random enricher or dispatcher process is killed this often.
    pub kill_every: Duration,
    /// Share of SMTP deliveries refused with 451.
    pub failure_rate: f64,
    pub dispatchers: usize,
    /// Requests in flight from the sender.
    pub concurrency: usize,
    pub data_dir: PathBuf,
    pub storage: BrokerStorage,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    pub notifications: usize,
    pub sent: usize,
    pub delivered: usize,
    pub lost: usize,
    pub duplicates: u64,
    /// Deliveries whose claim was taken over from a killed dispatcher: the outcome of the
    /// first attempt unknown, the one window where a duplicate is possible.
    pub unknown_outcomes: usize,
    /// Duplicates of notifications outside that window: must be 0.
    pub unexplained_duplicates: u64,
    pub dead_lettered: usize,
    pub kills: usize,
    pub max_stall_seconds: f64,
    pub elapsed_seconds: f64,
    pub delivered_per_second: f64,
}

impl ChaosReport {
    pub fn render(&self) -> String {
        format!(
            "notifications {}\nsent (202)    {}\ndelivered     {}\nlost          {}\nduplicates    {} (unknown outcomes {}, outside them {})\ndead-lettered {}\nkills         {}\nmax stall     {:.1} s\nelapsed       {:.1} s ({:.0} deliveries/s)\n",
            self.notifications,
            self.sent,
            self.delivered,
            self.lost,
            self.duplicates,
            self.unknown_outcomes,
            self.unexplained_duplicates,
            self.dead_lettered,
            self.kills,
            self.max_stall_seconds,
            self.elapsed_seconds,
            self.delivered_per_second
        )
    }
}

struct Role {
    args: Vec<&'static str>,
    log: PathBuf,
    child: Option<Child>,
}

impl Role {
    fn start(&mut self, config_file: &Path) -> anyhow::Result<()> {
        let exe = std::env::current_exe().context("locating the herald binary")?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let child = Command::new(exe)
            .args(&self.args)
            .env("HERALD_CONFIG", config_file)
            .env("RUST_LOG", "warn,librdkafka=error")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting herald {:?}", self.args))?;
        self.child = Some(child);
        Ok(())
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        self.kill();
    }
}

fn recipient(i: usize) -> String {
    format!("c{i}@chaos.test")
}

/// Notification ids whose stale claim a dispatcher took over, from the dispatchers' logs
/// (the processes that could count them are the ones killed).
fn taken_over(data: &Path) -> anyhow::Result<BTreeSet<String>> {
    let mut ids = BTreeSet::new();
    for entry in std::fs::read_dir(data)? {
        let path = entry?.path();
        let is_dispatcher = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("dispatch-") && n.ends_with(".log"));
        if !is_dispatcher {
            continue;
        }
        for line in std::fs::read_to_string(&path)?.lines() {
            if !line.contains("took over a stale claim") {
                continue;
            }
            let plain = strip_ansi(line);
            if let Some(id) =
                plain.split("notification_id=").nth(1).and_then(|r| r.split_whitespace().next())
            {
                ids.insert(id.to_owned());
            }
        }
    }
    Ok(ids)
}

/// `line` without terminal colour sequences (`ESC [ ... m`).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Posts notification `i` until the API answers 202; returns its notification id.
async fn send_one(http: &reqwest::Client, url: &str, key: &str, i: usize) -> String {
    let body = serde_json::json!({
        "to": [{"email": recipient(i)}],
        "subject": format!("chaos {i}"),
        "content": [{"type": "text/plain", "value": "chaos run"}],
    });
    let mut backoff = Duration::from_millis(50);
    loop {
        let answer = http.post(url).bearer_auth(key).json(&body).send().await;
        if let Ok(response) = answer
            && response.status().as_u16() == 202
            && let Ok(json) = response.json::<serde_json::Value>().await
            && let Some(id) = json["id"].as_str()
        {
            return id.to_owned();
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

pub async fn run(options: ChaosOptions) -> anyhow::Result<ChaosReport> {
    let data = options.data_dir.clone();
    if data.exists() {
        std::fs::remove_dir_all(&data).context("clearing the previous chaos run")?;
    }
    std::fs::create_dir_all(&data)?;
    let storage = options.storage.in_dir(&data);
    let broker = TansuBroker::start(None, storage, Some(&data.join("tansu.log"))).await?;
    let registry = DevRegistry::default().spawn("127.0.0.1:0".parse()?).await?;
    let sink_options = SinkOptions {
        keep_messages: 0,
        record_attempts: false,
        transient_failure_rate: options.failure_rate,
    };
    let sink = MailSink::start_with("127.0.0.1:0".parse()?, sink_options)?;

    let mut config = HeraldConfig { kafka: broker.kafka_config(), ..HeraldConfig::default() };
    config.kafka.consumer.drain_deadline_ms = 3_000;
    config.schema_registry.url = format!("http://{registry}");
    config.topics.partitions = 4;
    config.topics.for_single_broker();
    config.ingest.listen = ([127, 0, 0, 1], free_port()?).into();
    config.ingest.store_path = data.join("ingest.db");
    config.enricher.directory_path = data.join("directory.db");
    config.dispatch.email.smtp.host = sink.addr().ip().to_string();
    config.dispatch.email.smtp.port = sink.addr().port();
    config.dispatch.email.smtp.timeout_ms = 2_000;
    config.dispatch.ledger.path = data.join("ledger.db");
    config.dispatch.ledger.claim_timeout_ms = 5_000;
    config.dispatch.retry.delays_ms = vec![1_000, 2_000, 5_000, 10_000];
    config.validate()?;
    admin::create_topics(&config.kafka, &config.topic_specs()).await?;
    let (_, key) = ApiClients::open(&config.ingest.store_path)?.add("chaos").await?;

    // The roles read exactly this configuration (including the broker's producer settings).
    let config_file = data.join("herald.toml");
    std::fs::write(
        &config_file,
        toml::to_string(&config).context("writing the roles' configuration")?,
    )?;
    let env = config_file.as_path();
    let role = |name: &str, args: Vec<&'static str>| Role {
        args,
        log: data.join(format!("{name}.log")),
        child: None,
    };
    let mut ingest = role("ingest", vec!["ingest"]);
    ingest.start(env)?;
    let mut victims = vec![role("enrich", vec!["enrich"])];
    for i in 0..options.dispatchers.max(1) {
        victims.push(role(&format!("dispatch-{i}"), vec!["dispatch", "--channel", "email"]));
    }
    for victim in &mut victims {
        victim.start(env)?;
    }

    let http = reqwest::Client::new();
    let api = format!("http://{}", config.ingest.listen);
    let ready = Instant::now();
    while http.get(format!("{api}/readyz")).send().await.map(|r| r.status().as_u16()).ok()
        != Some(200)
    {
        anyhow::ensure!(
            ready.elapsed() < Duration::from_secs(30),
            "the send API did not become ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let started = Instant::now();
    let n = options.notifications;
    let sent = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let url = format!("{api}/v1/notifications");
    let sender = {
        let (sent, http, key) = (Arc::clone(&sent), http.clone(), key.clone());
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..n {
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
                let (http, url, key, sent) =
                    (http.clone(), url.clone(), key.clone(), Arc::clone(&sent));
                tasks.spawn(async move {
                    let id = send_one(&http, &url, &key, i).await;
                    sent.fetch_add(1, Ordering::Relaxed);
                    drop(permit);
                    (recipient(i), id)
                });
            }
            let mut ids = BTreeMap::new();
            while let Some(Ok((recipient, id))) = tasks.join_next().await {
                ids.insert(recipient, id);
            }
            ids
        })
    };

    let mut kills = 0;
    let mut last_kill = Instant::now();
    let mut random: u64 = 0x2545_f491_4f6c_dd1d;
    let mut last_total = 0;
    let mut last_progress = Instant::now();
    let mut max_stall = Duration::ZERO;
    let expected: Vec<String> = (0..n).map(recipient).collect();
    let delivered_unique =
        |per: &HashMap<String, u32>| expected.iter().filter(|a| per.contains_key(*a)).count();
    let settled_at = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let total = sink.total();
        // Until every notification could have arrived, any pause is a stall.
        let underway = total < n as u64;
        if total != last_total {
            last_total = total;
            last_progress = Instant::now();
        } else if underway {
            max_stall = max_stall.max(last_progress.elapsed());
        }
        let sending = sent.load(Ordering::Relaxed) < n;
        if underway && last_kill.elapsed() >= options.kill_every {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let index = (random % victims.len() as u64) as usize;
            let victim = &mut victims[index];
            victim.kill();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
            victim.start(env)?;
            last_kill = Instant::now();
        }
        if !sending && last_progress.elapsed() > Duration::from_secs(5) {
            let per = sink.per_recipient();
            if delivered_unique(&per) == n || last_progress.elapsed() > Duration::from_secs(60) {
                break last_progress;
            }
        }
    };
    let ids = sender.await?;
    let sent_ids: BTreeSet<&String> = ids.values().collect();
    let elapsed = settled_at.duration_since(started);

    for victim in &mut victims {
        victim.kill();
    }
    ingest.kill();
    let kafka = config.kafka.clone();
    let letters = tokio::task::spawn_blocking(move || {
        crate::dlq::read(&kafka, &crate::dlq::Filter::default())
    })
    .await??;
    let dead: BTreeSet<String> = letters
        .iter()
        .filter_map(|l| l.notification_id.clone())
        .filter(|id| sent_ids.contains(id))
        .collect();
    broker.stop().await;

    let per = sink.per_recipient();
    let delivered = delivered_unique(&per);
    let duplicates: u64 = per.values().map(|c| u64::from(c.saturating_sub(1))).sum();
    let unknown = taken_over(&data)?;
    let unexplained_duplicates: u64 = per
        .iter()
        .filter(|(to, _)| ids.get(*to).is_none_or(|id| !unknown.contains(id)))
        .map(|(_, c)| u64::from(c.saturating_sub(1)))
        .sum();
    let lost = n.saturating_sub(delivered + dead.len());
    Ok(ChaosReport {
        notifications: n,
        sent: ids.len(),
        delivered,
        lost,
        duplicates,
        unknown_outcomes: unknown.len(),
        unexplained_duplicates,
        dead_lettered: dead.len(),
        kills,
        max_stall_seconds: max_stall.as_secs_f64(),
        elapsed_seconds: elapsed.as_secs_f64(),
        delivered_per_second: delivered as f64 / elapsed.as_secs_f64().max(0.001),
    })
}
