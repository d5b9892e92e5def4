//! `herald chaos`: a fault run. Sends N notifications through the roles running as their own
//! processes (as `herald dev` would run them, but separately killable), while the SMTP
//! stand-in fails a share of deliveries transiently and either the enricher and dispatchers
//! are SIGKILLed at random (`--faults roles`, on Tansu or Kafka) or the brokers of a
//! three-broker Kafka cluster are (`--faults brokers`, see [`broker_faults`]). Then counts
//! what arrived: sent, delivered, lost, duplicates, dead-lettered, and the longest stretch
//! without a delivery.

mod broker_faults;
mod report;
mod role;
mod watch;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use herald_ingest::ApiClients;
use herald_runtime::GroupProtocol;
use herald_runtime::kafka::admin;
use herald_testkit::DevRegistry;
use tokio::sync::Semaphore;

use broker_faults::{Fault, FaultLog};
use herald_testkit::mail_sink::{MailSink, SinkOptions};
use herald_testkit::{Broker, BrokerChoice, BrokerStorage, KafkaCluster, TansuBroker, free_port};
use herald_wiring::config::HeraldConfig;
pub use report::ChaosReport;
use role::Role;
use tokio_util::sync::CancellationToken;
pub use watch::{Unconsumed, Unfinished};

/// `kafka.consumer.group_protocol` on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChaosGroupProtocol {
    Classic,
    Consumer,
}

/// What a chaos run breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Faults {
    /// SIGKILL a random enricher or dispatcher process every `--kill-every`.
    Roles,
    /// Every `--kill-every`, the next of: SIGKILL the broker leading the most partitions and
    /// restart it (twice), a rolling restart of all three. Needs `--broker kafka`.
    Brokers,
}

/// `herald chaos`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// How many notifications to send; with `--faults brokers`, at least this many: the
    /// sending goes on until every fault of the plan has struck under traffic.
    #[arg(long, default_value_t = 10_000)]
    pub notifications: usize,
    /// How often a fault strikes (e.g. 5s): a random enricher or dispatcher SIGKILLed, or
    /// the next broker fault.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub kill_every: Duration,
    /// Share of SMTP deliveries refused with 451.
    #[arg(long, default_value_t = 0.05)]
    pub failure_rate: f64,
    #[arg(long, default_value_t = 2)]
    pub dispatchers: usize,
    /// Requests in flight from the sender.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Notifications sent per second at most (0: as fast as the API takes them), so that
    /// traffic lasts through the faults.
    #[arg(long, default_value_t = 0)]
    pub rate: u32,
    #[arg(long, default_value = ".herald/chaos")]
    pub data_dir: PathBuf,
    /// The broker: tansu (one) or kafka (three, infra/engines/kafka.sh).
    #[arg(long, value_enum, default_value = "tansu")]
    pub broker: BrokerChoice,
    /// Use this running Kafka cluster instead of starting one (role faults only); the run's
    /// topics and groups get a prefix of their own, so a shared cluster is not disturbed.
    #[arg(long, conflicts_with = "broker")]
    pub bootstrap_servers: Option<String>,
    /// Tansu's storage: memory (one record per produce batch) or sqlite (batching).
    #[arg(long, value_enum, default_value = "memory")]
    pub storage: BrokerStorage,
    /// What to break: roles (enricher, dispatchers) or brokers (needs --broker kafka).
    #[arg(long, value_enum, default_value = "roles")]
    pub faults: Faults,
    /// The roles' consumer group protocol (kafka.consumer.group_protocol); consumer needs
    /// --broker kafka.
    #[arg(long, value_enum, default_value = "classic")]
    pub group_protocol: ChaosGroupProtocol,
    /// Also write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

impl ChaosArgs {
    /// Runs the fault run, prints its report, and fails if a notification was lost or sent
    /// twice outside an unknown outcome.
    #[allow(clippy::print_stdout)]
    pub async fn run(self) -> anyhow::Result<()> {
        let json = self.json.clone();
        let report = run(self).await?;
        print!("{}", report.render());
        if let Some(path) = json {
            std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
        }
        anyhow::ensure!(report.lost == 0, "{} notification(s) lost", report.lost);
        anyhow::ensure!(
            report.late == 0,
            "{} notification(s) late: still in partitions their group had not finished",
            report.late
        );
        anyhow::ensure!(
            report.unexplained_duplicates == 0,
            "{} duplicate(s) outside taken-over claims",
            report.unexplained_duplicates
        );
        Ok(())
    }
}

/// Brokers of the Kafka cluster a run starts.
const BROKERS: usize = 3;

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

/// The groups whose partitions the run watches: the enricher's and the email dispatchers'.
fn watched(config: &HeraldConfig) -> Vec<watch::Watched> {
    use herald_schemas::{Channel, Lane};
    let topics = config.kafka.topics();
    let claim = Duration::from_millis(config.dispatch.ledger.claim_timeout_ms);
    let mut dispatch = vec![(topics.channel_in(Channel::Email, Lane::Urgent), Duration::ZERO)];
    // Auto-commit lags a record's handling by its interval.
    let commit = Duration::from_millis(u64::from(config.kafka.consumer.auto_commit_interval_ms));
    for (tier, delay) in (1..).zip(config.dispatch.retry.delays()) {
        dispatch.push((topics.retry(Channel::Email, tier), delay.max(claim) + commit));
    }
    vec![
        watch::Watched {
            group: config.kafka.group("enricher"),
            topics: vec![(topics.requests_in(Lane::Urgent), Duration::ZERO)],
        },
        watch::Watched {
            group: herald_dispatchers::group(&config.kafka, herald_schemas::Channel::Email),
            topics: dispatch,
        },
    ]
}

/// Posts notification `i` until the API answers 202, as a careful caller does: with an
/// Idempotency-Key, so that a retry after a 503 (the broker did not acknowledge within
/// `ingest.send_wait_ms`, and may still write what was queued) is the same notification, not
/// a second one. Returns its notification id.
async fn send_one(http: &reqwest::Client, url: &str, key: &str, i: usize) -> String {
    let body = serde_json::json!({
        "to": [{"email": recipient(i)}],
        "subject": format!("chaos {i}"),
        "content": [{"type": "text/plain", "value": "chaos run"}],
    });
    let mut backoff = Duration::from_millis(50);
    loop {
        let answer = http
            .post(url)
            .bearer_auth(key)
            .header("Idempotency-Key", format!("chaos-{i}"))
            .json(&body)
            .send()
            .await;
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

pub async fn run(options: ChaosArgs) -> anyhow::Result<ChaosReport> {
    let data = options.data_dir.clone();
    if data.exists() {
        std::fs::remove_dir_all(&data).context("clearing the previous chaos run")?;
    }
    std::fs::create_dir_all(&data)?;
    anyhow::ensure!(
        options.faults != Faults::Brokers || options.broker == BrokerChoice::Kafka,
        "--faults brokers needs --broker kafka (a cluster of three)"
    );
    anyhow::ensure!(
        options.group_protocol == ChaosGroupProtocol::Classic
            || options.broker == BrokerChoice::Kafka
            || options.bootstrap_servers.is_some(),
        "--group-protocol consumer needs --broker kafka (Tansu speaks the classic protocol)"
    );
    anyhow::ensure!(
        options.faults == Faults::Roles || options.bootstrap_servers.is_none(),
        "--faults brokers starts its own cluster: leave out --bootstrap-servers"
    );
    let broker = match (&options.bootstrap_servers, options.broker) {
        (Some(servers), _) => Broker::Existing(servers.clone()),
        (None, BrokerChoice::Tansu) => {
            let storage = options.storage.in_dir(&data);
            let log = data.join("tansu.log");
            Broker::Tansu(Box::new(TansuBroker::start(None, storage, Some(&log)).await?))
        }
        (None, BrokerChoice::Kafka) => Broker::Kafka(Arc::new(
            KafkaCluster::start(&data.join("kafka"), BROKERS as u32)
                .await
                .context("starting three Kafka brokers (infra/engines/kafka.sh)")?,
        )),
    };
    let registry = DevRegistry::default().spawn("127.0.0.1:0".parse()?).await?;
    let sink_options = SinkOptions {
        keep_messages: 0,
        record_attempts: false,
        transient_failure_rate: options.failure_rate,
    };
    let sink = MailSink::start_with("127.0.0.1:0".parse()?, sink_options)?;

    let mut config = HeraldConfig { kafka: broker.kafka_config(), ..HeraldConfig::default() };
    if let Broker::Existing(_) = broker {
        // A shared cluster: topics and groups of the run's own.
        let run = format!("chaos{}", std::process::id());
        config.kafka.topic_prefix = format!("{run}.");
        config.kafka.group_prefix = format!("{run}-");
    }
    config.kafka.consumer.drain_deadline_ms = 3_000;
    config.kafka.consumer.group_protocol = match options.group_protocol {
        ChaosGroupProtocol::Classic => GroupProtocol::Classic,
        ChaosGroupProtocol::Consumer => GroupProtocol::Consumer,
    };
    config.schema_registry.url = format!("http://{registry}");
    config.topics.partitions = 4;
    if !matches!(broker, Broker::Kafka(_)) {
        config.topics.for_single_broker();
    }
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
        static_member: !matches!(broker, Broker::Tansu(_)),
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
    let watched = watched(&config);
    let sampling = CancellationToken::new();
    let sampler = {
        let (kafka, watched, stop) = (config.kafka.clone(), watched.clone(), sampling.clone());
        tokio::task::spawn_blocking(move || {
            watch::sample_until(&kafka, &watched, started, Duration::from_millis(500), &stop)
        })
    };
    let at_least = options.notifications;
    // Notifications handed to the sender's tasks, and answered.
    let (issued, sent) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    // Set once the fault plan has run through (at once when there is none): a slow broker
    // restart must not leave the plan's last faults to strike after the traffic.
    let plan_ran = CancellationToken::new();
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let url = format!("{api}/v1/notifications");
    let rate = options.rate;
    let sender = {
        let (issued, sent, http, key) =
            (Arc::clone(&issued), Arc::clone(&sent), http.clone(), key.clone());
        let plan_ran = plan_ran.clone();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            let pace = (rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(rate)));
            let mut next = tokio::time::Instant::now();
            for i in 0.. {
                if i >= at_least && plan_ran.is_cancelled() {
                    break;
                }
                if let Some(pace) = pace {
                    tokio::time::sleep_until(next).await;
                    next += pace;
                }
                let Ok(permit) = Arc::clone(&permits).acquire_owned().await else { break };
                let (http, url, key, sent) =
                    (http.clone(), url.clone(), key.clone(), Arc::clone(&sent));
                issued.fetch_add(1, Ordering::SeqCst);
                tasks.spawn(async move {
                    let id = send_one(&http, &url, &key, i).await;
                    sent.fetch_add(1, Ordering::SeqCst);
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

    let fault_log = Arc::new(FaultLog::default());
    let faults_stop = CancellationToken::new();
    // Broker faults begin once traffic flows, so that the partitions they hit are busy.
    let mut broker_faults = None;
    let broker_fault_plan = match (&broker, options.faults) {
        (Broker::Kafka(cluster), Faults::Brokers) => {
            let topics: Vec<String> = config.topic_specs().into_iter().map(|t| t.name).collect();
            Some((Arc::clone(cluster), topics))
        }
        _ => None,
    };
    if broker_fault_plan.is_none() {
        plan_ran.cancel();
    }
    let mut last_kill = Instant::now();
    let mut random: u64 = 0x2545_f491_4f6c_dd1d;
    let mut last_total = 0;
    let mut last_progress = Instant::now();
    let mut max_stall = Duration::ZERO;
    let mut max_stall_began = started;
    // The recipients of the notifications issued so far, grown as the run issues more.
    let mut expected: Vec<String> = Vec::new();
    let mut delivered_unique = |per: &HashMap<String, u32>, n: usize| {
        expected.extend((expected.len()..n).map(recipient));
        expected.iter().take(n).filter(|a| per.contains_key(*a)).count()
    };
    // Mail accepted by the end of each second of the run.
    let mut per_second: Vec<u64> = Vec::new();
    let settled_at = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let total = sink.total();
        let n = issued.load(Ordering::SeqCst);
        let second = started.elapsed().as_secs() as usize;
        if per_second.len() <= second {
            per_second.resize(second + 1, total);
        }
        per_second[second] = total;
        // From the first delivery until every notification could have arrived, any pause
        // is a stall (the roles' start before it is not).
        let underway = total > 0 && total < n as u64;
        if total != last_total {
            last_total = total;
            last_progress = Instant::now();
        } else if underway && last_progress.elapsed() > max_stall {
            max_stall = last_progress.elapsed();
            max_stall_began = last_progress;
        }
        if total > 0
            && broker_faults.is_none()
            && let Some((cluster, topics)) = &broker_fault_plan
        {
            broker_faults = Some(tokio::spawn(broker_faults::run(
                Arc::clone(cluster),
                config.kafka.clone(),
                topics.clone(),
                options.kill_every,
                (Arc::clone(&fault_log), faults_stop.clone(), plan_ran.clone()),
            )));
        }
        // A plan that failed has run as far as it will (its error is reported below).
        if broker_faults.as_ref().is_some_and(tokio::task::JoinHandle::is_finished) {
            plan_ran.cancel();
        }
        let sending = !plan_ran.is_cancelled() || n < at_least || sent.load(Ordering::SeqCst) < n;
        // Faults stop with the sends: what follows is the drain, measured, not disturbed.
        if options.faults == Faults::Roles
            && underway
            && sending
            && last_kill.elapsed() >= options.kill_every
        {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            let index = (random % victims.len() as u64) as usize;
            let victim = &mut victims[index];
            victim.kill();
            fault_log.record(Fault::RoleKilled(victim.name()));
            tokio::time::sleep(Duration::from_millis(500)).await;
            victim.start(env)?;
            last_kill = Instant::now();
        }
        if !sending && last_progress.elapsed() > Duration::from_secs(5) {
            let per = sink.per_recipient();
            if delivered_unique(&per, n) == n || last_progress.elapsed() > Duration::from_secs(60) {
                break last_progress;
            }
        }
    };
    faults_stop.cancel();
    sampling.cancel();
    let max_unconsumed = sampler.await?;
    if let Some(faults) = broker_faults {
        faults.await?.context("the broker faults")?;
    }
    let ids = sender.await?;
    let n = issued.load(Ordering::SeqCst);
    let sent_ids: BTreeSet<&String> = ids.values().collect();
    let elapsed = settled_at.duration_since(started);

    for victim in &mut victims {
        victim.kill();
    }
    ingest.kill();
    let kafka = config.kafka.clone();
    let letters = tokio::task::spawn_blocking(move || {
        herald_wiring::dlq::read(&kafka, &herald_wiring::dlq::Filter::default())
    })
    .await??;
    let dead: BTreeSet<String> = letters
        .iter()
        .filter_map(|l| l.notification_id.clone())
        .filter(|id| sent_ids.contains(id))
        .collect();
    let per = sink.per_recipient();
    let undelivered: BTreeSet<String> = ids
        .iter()
        .filter(|(to, id)| !per.contains_key(*to) && !dead.contains(*id))
        .map(|(_, id)| id.clone())
        .collect();
    let (unfinished, late) = {
        let kafka = config.kafka.clone();
        tokio::task::spawn_blocking(move || watch::late(&kafka, &watched, &undelivered)).await??
    };
    let broker_name =
        format!("{}, {:?} groups", broker.name(), options.group_protocol).to_lowercase();
    broker.stop().await;

    let delivered = delivered_unique(&per, n);
    let duplicates: u64 = per.values().map(|c| u64::from(c.saturating_sub(1))).sum();
    let unknown = taken_over(&data)?;
    let unexplained_duplicates: u64 = per
        .iter()
        .filter(|(to, _)| ids.get(*to).is_none_or(|id| !unknown.contains(id)))
        .map(|(_, c)| u64::from(c.saturating_sub(1)))
        .sum();
    let lost = n.saturating_sub(delivered + dead.len() + late.len());
    let lost_ids: Vec<String> = ids
        .iter()
        .filter(|(to, id)| !per.contains_key(*to) && !dead.contains(*id) && !late.contains(*id))
        .map(|(_, id)| id.clone())
        .take(20)
        .collect();
    Ok(ChaosReport {
        notifications: n,
        sent: ids.len(),
        delivered,
        lost,
        late: late.len(),
        unfinished,
        max_unconsumed,
        lost_ids,
        duplicates,
        unknown_outcomes: unknown.len(),
        unexplained_duplicates,
        dead_lettered: dead.len(),
        broker: broker_name,
        kills: fault_log.count(|f| matches!(f, Fault::RoleKilled(_))),
        broker_kills: fault_log.count(|f| matches!(f, Fault::LeaderKilled(_))),
        rolling_restarts: fault_log.count(|f| matches!(f, Fault::BrokerRestarted(_))) / BROKERS,
        max_stall_seconds: max_stall.as_secs_f64(),
        max_stall_began_at_seconds: max_stall_began.duration_since(started).as_secs_f64(),
        faults: fault_log
            .entries()
            .into_iter()
            .map(|(at, fault)| {
                (at.saturating_duration_since(started).as_secs_f64(), fault.to_string())
            })
            .collect(),
        deliveries_per_second: std::iter::once(0)
            .chain(per_second.iter().copied())
            .collect::<Vec<u64>>()
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
            .collect(),
        elapsed_seconds: elapsed.as_secs_f64(),
        delivered_per_second: delivered as f64 / elapsed.as_secs_f64().max(0.001),
    })
}
