//! A role as operators run it: its own `herald` process, configured by environment, stopped
//! with SIGTERM.

use crate::support;

use std::collections::BTreeMap;
use std::process::Stdio;

use std::time::{Duration, Instant};

use herald_runtime::kafka::Producer;
use herald_schemas::{Channel, ChannelMessage, EmailContent};
use support::{Running, TestEnv};

fn dispatcher_process(env: &TestEnv) -> Running {
    Running::spawn(
        support::herald_command(env)
            .args(["dispatch", "--channel", "email"])
            // Only the commit made while draining on SIGTERM can record progress.
            .env("HERALD__KAFKA__CONSUMER__AUTO_COMMIT_INTERVAL_MS", "600000")
            .stdout(Stdio::null()),
    )
}

fn channel_message(target: &str, subject: &str) -> ChannelMessage {
    ChannelMessage {
        notification_id: uuid::Uuid::now_v7().to_string(),
        channel: "email".into(),
        target: target.into(),
        user_id: None,
        app_id: None,
        route: "default".into(),
        category: "transactional".into(),
        accepted_at: herald_schemas::now_millis(),
        from: None,
        email: Some(EmailContent {
            subject: subject.into(),
            text: Some("body".into()),
            html: None,
        }),
        sms: None,
        push: None,
        metadata: BTreeMap::new(),
        fallback: None,
        ..ChannelMessage::default()
    }
}

/// Produces one email channel message per target, as the enricher would.
async fn send_all(env: &TestEnv, targets: &[String], subject: &str) {
    let topic = env.topics().channel(Channel::Email);
    let codec = env.codec();
    let producer = Producer::new(&env.config.kafka, "test").unwrap();
    let mut acks = Vec::new();
    for target in targets {
        let payload = codec.encode(&topic, &channel_message(target, subject)).await.unwrap();
        acks.push(producer.enqueue(&topic, Some(target.as_bytes()), &payload, None).await.unwrap());
    }
    herald_runtime::kafka::wait_all(acks).await.unwrap();
}

async fn send(env: &TestEnv, target: &str, subject: &str) {
    send_all(env, &[target.to_owned()], subject).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_commits_and_exits_cleanly_so_a_restart_sends_nothing_twice() {
    let env = TestEnv::start().await;
    send(&env, "first@example.com", "first").await;
    let dispatcher = dispatcher_process(&env);
    env.mail
        .wait_for(Duration::from_secs(30), |m| m.to == ["first@example.com"])
        .await
        .expect("first delivered");
    let status = dispatcher.terminate();
    assert!(status.success(), "clean exit after SIGTERM: {status}");

    send(&env, "second@example.com", "second").await;
    let dispatcher = dispatcher_process(&env);
    env.mail
        .wait_for(Duration::from_secs(30), |m| m.to == ["second@example.com"])
        .await
        .expect("second delivered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(dispatcher.terminate().success());

    let to: Vec<Vec<String>> = env.mail.received().into_iter().map(|m| m.to).collect();
    assert_eq!(
        to,
        [["first@example.com"], ["second@example.com"]],
        "the first was not resent after the restart"
    );
}

/// Deliveries claimed and not completed: what a killed dispatcher had in flight.
/// Deliveries claimed and not completed in the ledger, on whichever store it is.
async fn claimed_in_ledger(env: &TestEnv) -> usize {
    let ledger = &env.config.dispatch.ledger;
    if env.stores_on_cql() {
        // A claim whose delivery has no outcome.
        let session = ledger.scylla.connect().await.unwrap();
        let keys = |table: &str, state: &str| {
            let session = &session;
            let cql = format!(
                "SELECT notification_id, channel, target, state FROM {}.{table}",
                ledger.scylla.keyspace
            );
            let state = state.to_owned();
            async move {
                let statement = session.prepare(cql).await.unwrap();
                let rows: Vec<(String, String, String, Option<String>)> =
                    herald_runtime::scylla::select(session, &statement, ()).await.unwrap();
                rows.into_iter()
                    .filter(|r| state.is_empty() || r.3.as_deref() == Some(state.as_str()))
                    .map(|(n, c, t, _)| (n, c, t))
                    .collect::<std::collections::BTreeSet<_>>()
            }
        };
        let claimed = keys("delivery_ledger", "claimed").await;
        let completed = keys("delivery_outcomes", "").await;
        return claimed.difference(&completed).count();
    }
    let ledger = rusqlite::Connection::open(&ledger.path).unwrap();
    ledger
        .query_row("SELECT count(*) FROM delivery_ledger WHERE state = 'claimed'", [], |row| {
            row.get::<_, i64>(0)
        })
        .map(|n| n as usize)
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dispatcher_killed_mid_batch_repeatedly_delivers_everything_with_duplicates_only_for_sends_in_flight()
 {
    kill_a_dispatcher_mid_batch(TestEnv::start().await).await;
}

/// The same with every store on the run's CQL node: claims are lightweight transactions there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatcher_killed_mid_batch_with_its_ledger_on_a_cql_node_sends_twice_only_what_was_in_flight()
 {
    let Some(env) = TestEnv::on_cql().await else { return };
    kill_a_dispatcher_mid_batch(env).await;
}

async fn kill_a_dispatcher_mid_batch(env: TestEnv) {
    const N: usize = 240;
    env.mail.set_delay(Some(Duration::from_millis(40)));
    let targets: Vec<String> = (0..N).map(|i| format!("r{i}@example.com")).collect();
    send_all(&env, &targets, "batch").await;
    let start = || {
        Running::spawn(
            support::herald_command(&env)
                .args(["dispatch", "--channel", "email"])
                .env("HERALD__DISPATCH__LEDGER__CLAIM_TIMEOUT_MS", "3000")
                .env("HERALD__DISPATCH__EMAIL__SMTP__TIMEOUT_MS", "2000")
                .stdout(Stdio::null()),
        )
    };

    let mut in_flight_at_kills = 0;
    for round in 1..=3 {
        let dispatcher = start();
        let target = round * N / 5;
        let deadline = Instant::now() + Duration::from_secs(60);
        while env.mail.received().len() < target {
            assert!(
                Instant::now() < deadline,
                "round {round}: stuck at {}",
                env.mail.received().len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        dispatcher.kill();
        let in_flight = claimed_in_ledger(&env).await;
        in_flight_at_kills += in_flight;
        eprintln!(
            "round {round}: killed after {} mails with {in_flight} deliveries in flight",
            env.mail.received().len()
        );
    }

    let dispatcher = start();
    let everyone = |mails: &[herald_testkit::mail_sink::ReceivedMail]| {
        mails
            .iter()
            .flat_map(|m| m.to.iter().cloned())
            .collect::<std::collections::BTreeSet<_>>()
            .len()
            == N
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    while !everyone(&env.mail.received()) {
        assert!(
            Instant::now() < deadline,
            "not everything delivered: {} unique",
            env.mail.received().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await; // anything still coming would be a duplicate
    dispatcher.terminate();

    let mails = env.mail.received();
    let duplicates = mails.len() - N;
    eprintln!(
        "{N} delivered, {duplicates} duplicates, {in_flight_at_kills} sends in flight at the kills"
    );
    assert!(
        duplicates <= in_flight_at_kills,
        "{duplicates} duplicates but only {in_flight_at_kills} sends were in flight at the kills"
    );
}

/// On the run's Kafka (under prefixes of its own), else on a Tansu broker of its own.
/// Sends are paced so that the kills strike while traffic flows. On Tansu the kills are
/// spaced beyond a session (6 s): its coordinator can leave a group whose only member was
/// killed twice within one session without an owner (docs/tansu.md).
#[test]
fn chaos_run_killing_enricher_and_dispatchers_loses_nothing() {
    let tansu_leg = std::env::var("HERALD_TEST_BROKER").is_ok_and(|b| b == "tansu");
    let kafka = std::env::var("HERALD_TEST_KAFKA").ok().filter(|_| !tansu_leg);
    let pace = if kafka.is_some() { ["3s", "40"] } else { ["8s", "20"] };
    let mut args = vec!["--kill-every", pace[0], "--rate", pace[1], "--failure-rate", "0.1"];
    if let Some(servers) = &kafka {
        args.extend(["--bootstrap-servers", servers]);
    }
    let (report, stdout) = support::chaos_run(&args, 300);
    assert!(report["kills"].as_u64().unwrap() >= 1, "roles were killed: {stdout}");
}

/// How many partitions of `group` the process logging to `log` held after each rebalance.
fn assignments(log: &std::path::Path, group: &str) -> Vec<usize> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let plain: String = {
        // Strip ANSI colour codes: ESC [ ... m.
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    plain
        .lines()
        .filter(|l| l.contains("partitions assigned") && l.contains(&format!("group={group} ")))
        .filter_map(|l| l.rsplit("assigned=").next()?.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_dispatchers_of_a_channel_share_its_partitions_and_one_stopping_hands_them_over_without_loss_or_double_send()
 {
    let env = TestEnv::start().await;
    // A slow relay keeps both processes busy while one of them stops.
    env.mail.set_delay(Some(Duration::from_millis(10)));
    let logs = [env.dir.path().join("a.log"), env.dir.path().join("b.log")];
    let start = |log: &std::path::Path| {
        Running::spawn(
            support::herald_command(&env)
                .args(["dispatch", "--channel", "email"])
                .env("RUST_LOG", "info,librdkafka=error")
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(log).unwrap()),
        )
    };
    let first = start(&logs[0]);
    let second = start(&logs[1]);
    let group = herald_dispatchers::group(&env.config.kafka, Channel::Email);
    let deadline = Instant::now() + Duration::from_secs(90);
    while !logs.iter().all(|l| assignments(l, &group).last().is_some_and(|n| *n > 0)) {
        let seen: Vec<_> = logs.iter().map(|l| assignments(l, &group)).collect();
        let tail = std::fs::read_to_string(&logs[1]).unwrap_or_default();
        assert!(Instant::now() < deadline, "both processes get partitions: {seen:?}\n{tail}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shared: Vec<usize> = logs.iter().map(|l| *assignments(l, &group).last().unwrap()).collect();

    let targets: Vec<String> = (0..300).map(|i| format!("scale{i}@example.com")).collect();
    send_all(&env, &targets, "scale").await;
    while env.mail.total() < 60 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(first.terminate().success(), "the first drains and exits cleanly");
    let deadline = Instant::now() + Duration::from_secs(90);
    while (env.mail.total() as usize) < targets.len() {
        assert!(Instant::now() < deadline, "delivered {} of 300", env.mail.total());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let survivor = assignments(&logs[1], &group);
    assert_eq!(
        survivor.last().copied(),
        Some(shared.iter().sum()),
        "the survivor took over every partition: {survivor:?}, shared {shared:?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let per_recipient = env.mail.per_recipient();
    for target in &targets {
        assert_eq!(per_recipient.get(target), Some(&1), "{target} delivered once");
    }
    assert!(second.terminate().success());
}
