//! Read-your-writes: once a directory write is answered (or a change record acknowledged),
//! the next send to that user uses it, on every enricher process, both lanes, without
//! waiting out a cache TTL.

use std::time::Duration;

use herald_schemas::{AvroCodec, DirectoryChange, DirectoryOp, UserFields};
use reqwest::Method;
use serde_json::json;

use super::{call, outcome, outcomes, send};
use crate::support::{Running, TestEnv, herald_command};

/// `herald enrich` as its own process, its metrics on `port`, its log in `log`.
fn enricher_process(env: &TestEnv, port: u16, log: &std::path::Path) -> Running {
    Running::spawn(
        herald_command(env)
            .arg("enrich")
            .env("HERALD__OPS__LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info,librdkafka=warn")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(log).unwrap()),
    )
}

async fn metrics(port: u16) -> String {
    match reqwest::get(format!("http://127.0.0.1:{port}/metrics")).await {
        Ok(answer) => answer.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Whether the latest assignment `log` records for `group` holds a partition.
fn owns_partitions(log: &str, group: &str) -> bool {
    let group = format!("group={group} ");
    let latest = log.lines().rev().find(|l| {
        l.contains(&group)
            && (l.contains("partitions assigned") || l.contains("partitions revoked"))
    });
    latest.is_some_and(|l| l.contains("partitions assigned") && !l.contains("assigned=0"))
}

/// Waits until each enricher (by its log) owns a partition of both lanes' requests and of
/// the directory's topics: the requests then spread over both processes, and no write waits
/// out the directory applier's rebalance.
async fn both_own_partitions(env: &TestEnv, logs: &[std::path::PathBuf]) {
    let lanes = [
        env.group(herald_enricher::GROUP),
        env.group("enricher-bulk"),
        env.group(herald_enricher::DIRECTORY_GROUP),
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    for log in logs {
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if lanes.iter().all(|group| owns_partitions(&text, group)) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} owns no partition of both lanes:\n{text}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// How many requests the enricher on `port` made sure were fresh.
async fn fresh_requests(port: u16) -> u64 {
    metrics(port)
        .await
        .lines()
        .find(|l| l.starts_with("herald_directory_ready_seconds_count{outcome=\"ready\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse::<f64>().ok())
        .map_or(0, |n| n as u64)
}

/// `per_partition` users whose requests land on each partition of `herald.requests`, as
/// the send API's producer partitions them (librdkafka's default: CRC-32 of the key): every
/// enricher then has some of them.
fn users_on_every_partition(per_partition: usize) -> Vec<String> {
    let crc32 = |bytes: &[u8]| {
        let mut crc = !0_u32;
        for byte in bytes {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    };
    let partitions = crate::support::PARTITIONS.unsigned_abs();
    let mut users = Vec::new();
    for partition in 0..partitions {
        let on_it = (0..)
            .map(|i| format!("fresh-{i}"))
            .filter(|u| crc32(u.as_bytes()) % partitions == partition);
        users.extend(on_it.take(per_partition));
    }
    users
}

/// Each user, once per lane and channel: urgent (transactional) and bulk (marketing), email
/// and push.
const SENDS: [(&str, &str); 4] = [
    ("email", "transactional"),
    ("email", "marketing"),
    ("push", "transactional"),
    ("push", "marketing"),
];

/// Sends `SENDS` to every user; what each was routed to or skipped for, in that order.
async fn send_all(
    env: &TestEnv,
    api: &herald_testkit::SendApi,
    key: &str,
    users: &[String],
) -> Vec<Vec<String>> {
    let mut ids = Vec::new();
    for user in users {
        for (channel, category) in SENDS {
            ids.push(send(api, key, user, channel, category).await);
        }
    }
    let found = outcomes(env, &ids).await;
    ids.chunks(SENDS.len())
        .map(|chunk| chunk.iter().map(|id| outcome(&found[id])).collect())
        .collect()
}

async fn each_write_is_seen_by_the_next_send_on_two_enricher_processes(env: TestEnv) {
    let key = env.directory_key().await;
    let api = env.pipeline_roles(false, &[]).await;
    let ports = [herald_testkit::free_port().unwrap(), herald_testkit::free_port().unwrap()];
    let logs = [env.dir.path().join("enricher-a.log"), env.dir.path().join("enricher-b.log")];
    let enrichers: Vec<Running> =
        ports.iter().zip(&logs).map(|(port, log)| enricher_process(&env, *port, log)).collect();
    both_own_partitions(&env, &logs).await;
    let users = users_on_every_partition(2);
    let put = |user: &str, email: String, token: String| {
        let (api, key, user) = (&api, &key, user.to_owned());
        async move {
            let body = json!({"email": email, "phone": "+14155550100"});
            let (status, answer) =
                call(api, key, (Method::PUT, &format!("/v1/users/{user}")), Some(body)).await;
            assert!(status == 201 || status == 200, "{status} {answer}");
            let device = json!({"platform": "android", "token": token});
            let path = format!("/v1/users/{user}/devices/phone");
            let (status, answer) = call(api, key, (Method::PUT, &path), Some(device)).await;
            assert!(status == 201 || status == 200, "{status} {answer}");
        }
    };
    for (i, user) in users.iter().enumerate() {
        put(user, format!("old-{i}@example.com"), format!("old-token-{i}")).await;
    }
    // Every process's caches warm, on both lanes.
    let before = send_all(&env, &api, &key, &users).await;
    for (i, got) in before.iter().enumerate() {
        let (email, token) =
            (format!("routed old-{i}@example.com"), format!("routed old-token-{i}"));
        assert_eq!(got, &[email.clone(), email, token.clone(), token], "user {i}");
    }

    // Changed through the API, sent at once.
    for (i, user) in users.iter().enumerate() {
        let patch = json!({"email": format!("new-{i}@example.com")});
        let (status, answer) =
            call(&api, &key, (Method::PATCH, &format!("/v1/users/{user}")), Some(patch)).await;
        assert_eq!(status, 200, "{answer}");
        let device = json!({"platform": "android", "token": format!("new-token-{i}")});
        let path = format!("/v1/users/{user}/devices/phone");
        assert_eq!(call(&api, &key, (Method::PUT, &path), Some(device)).await.0, 200);
    }
    let after = send_all(&env, &api, &key, &users).await;
    for (i, got) in after.iter().enumerate() {
        let (email, token) =
            (format!("routed new-{i}@example.com"), format!("routed new-token-{i}"));
        assert_eq!(
            got,
            &[email.clone(), email, token.clone(), token],
            "user {i}: the new address and token"
        );
    }

    // A service's change produced to the topic: sent once the broker acknowledged it.
    let codec = AvroCodec::new(&env.config.schema_registry.resolve().unwrap()).unwrap();
    let writer = herald_enricher::DirectoryWriter::new(
        &env.config.kafka,
        std::sync::Arc::new(codec),
        herald_runtime::kafka::Producer::new(&env.config.kafka, "a-service").unwrap(),
        "a-service",
    )
    .unwrap();
    for (i, user) in users.iter().enumerate() {
        let mut change = DirectoryChange::new(user, DirectoryOp::PatchUser);
        change.user = Some(UserFields {
            email: Some(format!("kafka-{i}@example.com")),
            ..UserFields::default()
        });
        writer.change(&change).await.unwrap().wait().await.unwrap();
    }
    let produced = send_all(&env, &api, &key, &users).await;
    for (i, got) in produced.iter().enumerate() {
        let email = format!("routed kafka-{i}@example.com");
        assert_eq!(&got[..2], &[email.clone(), email], "user {i}: the produced address");
    }

    // A device removed, an opt-out set: nothing goes to them.
    for user in &users {
        let path = format!("/v1/users/{user}/devices/phone");
        assert_eq!(call(&api, &key, (Method::DELETE, &path), None).await.0, 204);
        let opt_out = json!({"preferences": [{"category": "marketing", "channel": "email", "opted_in": false}]});
        let path = format!("/v1/users/{user}/preferences");
        assert_eq!(call(&api, &key, (Method::PUT, &path), Some(opt_out)).await.0, 200);
    }
    let removed = send_all(&env, &api, &key, &users).await;
    for (i, got) in removed.iter().enumerate() {
        let email = format!("routed kafka-{i}@example.com");
        let expected = [
            email,
            "skipped opted_out".into(),
            "skipped no_device".into(),
            "skipped no_device".into(),
        ];
        assert_eq!(got, &expected, "user {i}");
    }

    // Erased: skipped, never delivered from a cache.
    for user in &users {
        assert_eq!(
            call(&api, &key, (Method::DELETE, &format!("/v1/users/{user}")), None).await.0,
            204
        );
    }
    let erased = send_all(&env, &api, &key, &users).await;
    for got in &erased {
        assert!(got.iter().all(|o| o == "skipped unknown_user"), "{got:?}");
    }

    for port in ports {
        assert!(fresh_requests(port).await > 0, "the enricher on {port} enriched none of them");
    }
    drop(enrichers);
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_directory_write_is_seen_by_the_next_send_on_two_enricher_processes() {
    each_write_is_seen_by_the_next_send_on_two_enricher_processes(TestEnv::start().await).await;
}

/// The same with the directory (and every store) on the run's CQL node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_directory_write_on_a_cql_node_is_seen_by_the_next_send_on_two_enricher_processes() {
    let Some(env) = TestEnv::on_cql().await else { return };
    each_write_is_seen_by_the_next_send_on_two_enricher_processes(env).await;
}

/// A token registered again under another user leaves the first: the next push to the first
/// user finds no device, the next to the second goes to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_registered_under_another_user_moves_to_that_user_for_the_next_send() {
    let env = TestEnv::start().await;
    let key = env.directory_key().await;
    let api = env.pipeline().await;
    for user in ["first", "second"] {
        let (status, _) =
            call(&api, &key, (Method::PUT, &format!("/v1/users/{user}")), Some(json!({}))).await;
        assert_eq!(status, 201);
    }
    let device = json!({"platform": "ios", "token": "ab".repeat(32)});
    let (status, _) =
        call(&api, &key, (Method::PUT, "/v1/users/first/devices/phone"), Some(device.clone()))
            .await;
    assert_eq!(status, 201);
    let first = send(&api, &key, "first", "push", "transactional").await;
    let token = "ab".repeat(32);
    // Decided before the token moves: a send made before a write may see either.
    let found = outcomes(&env, std::slice::from_ref(&first)).await;
    assert_eq!(outcome(&found[&first]), format!("routed {token}"));
    let (status, _) =
        call(&api, &key, (Method::PUT, "/v1/users/second/devices/pad"), Some(device)).await;
    assert_eq!(status, 201);
    let (status, devices) = call(&api, &key, (Method::GET, "/v1/users/first/devices"), None).await;
    assert_eq!((status, devices["devices"].as_array().map(Vec::len)), (200, Some(0)), "{devices}");
    let again = send(&api, &key, "first", "push", "transactional").await;
    let second = send(&api, &key, "second", "push", "transactional").await;
    let found = outcomes(&env, &[again.clone(), second.clone()]).await;
    assert_eq!(outcome(&found[&again]), "skipped no_device", "moved away");
    assert_eq!(outcome(&found[&second]), format!("routed {token}"));
    api.stop().await;
}

/// A template changed through the API is the one the next send renders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_template_changed_through_the_api_is_rendered_by_the_next_send() {
    let env = TestEnv::start().await;
    let key = env.directory_key().await;
    let api = env.pipeline().await;
    let (status, _) = call(
        &api,
        &key,
        (Method::PUT, "/v1/users/reader"),
        Some(json!({"email": "reader@example.com"})),
    )
    .await;
    assert_eq!(status, 201);
    let template = |subject: &str| json!({"variants": [{"channel": "email", "subject": subject, "body": "Hi {{ name }}"}]});
    let send_template = || {
        json!({"to": [{"user_id": "reader"}], "template_id": "news", "data": {"name": "Ji"}})
            .to_string()
    };
    for (round, subject) in ["First {{ name }}", "Second {{ name }}"].into_iter().enumerate() {
        let (status, answer) =
            call(&api, &key, (Method::PUT, "/v1/templates/news"), Some(template(subject))).await;
        assert_eq!(status, if round == 0 { 201 } else { 200 }, "{answer}");
        assert_eq!(answer["variables"], json!(["name"]), "{answer}");
        let (status, answer) = api.post(Some(&key), &send_template()).await;
        assert_eq!(status, 202, "{answer}");
        let wanted = subject.replace("{{ name }}", "Ji");
        env.mail
            .wait_for(Duration::from_secs(30), |m| {
                m.header("Subject").as_deref() == Some(wanted.as_str())
            })
            .await
            .unwrap_or_else(|| panic!("no mail with subject {wanted:?}"));
    }
    let (status, _) = call(&api, &key, (Method::DELETE, "/v1/templates/news"), None).await;
    assert_eq!(status, 204);
    let (status, _) = call(&api, &key, (Method::GET, "/v1/templates/news"), None).await;
    assert_eq!(status, 404);
    api.stop().await;
}
