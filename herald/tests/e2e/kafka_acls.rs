//! Herald on a Kafka with an authorizer (`StandardAuthorizer`, nothing allowed without an
//! ACL), each role as a SCRAM user of its own holding exactly what `herald acls` lists (the
//! list docs/production.md shows): the pipeline works end to end; without one of them a role
//! stops as it starts, naming the permission.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::kafka_security::{SecureListener, secure_listener, secure_role_as};
use crate::support::{Running, TestEnv, email_body, herald_command, send_when_up};

/// Runs Kafka's ACL tool (`kafka-acls.sh`) with `args` on the run's broker.
fn kafka_acls(args: &[String]) {
    let dir = std::env::var("HERALD_TEST_KAFKA_DIR").expect("HERALD_TEST_KAFKA_DIR is set");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/engines/kafka.sh");
    let out = Command::new(script)
        .args(["tool", &dir, "org.apache.kafka.tools.AclCommand"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kafka-acls {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Adds (`--add`) or removes (`--remove`) one ACL: `principal` may do `operation` on the
/// resource `kind` (`topic`, `group`) named `name`.
fn change_acl(
    env: &TestEnv,
    action: &str,
    principal: &str,
    operation: &str,
    (kind, name): (&str, &str),
) {
    let mut args: Vec<String> = ["--bootstrap-server", &env.config.kafka.bootstrap_servers, action]
        .map(str::to_owned)
        .to_vec();
    if action == "--remove" {
        args.push("--force".into());
    }
    for arg in
        ["--allow-principal", principal, "--operation", operation, &format!("--{kind}"), name]
    {
        args.push(arg.to_owned());
    }
    kafka_acls(&args);
}

/// The `kafka-acls.sh` command lines `herald acls --commands` prints for `clients`, as
/// argument lists (without the script and its `--command-config`: the test kit's plaintext
/// listener is a super user's).
fn listed_grants(env: &TestEnv, clients: &[&str]) -> Vec<Vec<String>> {
    let out = herald_command(env).arg("acls").args(clients).arg("--commands").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<Vec<String>> = text
        .lines()
        .filter_map(|line| line.strip_prefix("kafka-acls.sh "))
        .map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            let mut args = Vec::new();
            let mut i = 0;
            while i < words.len() {
                if words[i] == "--command-config" {
                    i += 2;
                    continue;
                }
                args.push(words[i].to_owned());
                i += 1;
            }
            args
        })
        .collect();
    assert!(lines.len() >= clients.len(), "a grant per client: {text}");
    lines
}

/// Grants every listed ACL, a few tools at a time.
fn grant(grants: &[Vec<String>]) {
    for chunk in grants.chunks(4) {
        std::thread::scope(|scope| {
            for args in chunk {
                scope.spawn(move || kafka_acls(args));
            }
        });
    }
}

fn user(name: &str) -> String {
    let users = std::env::var("HERALD_TEST_KAFKA_ROLE_USERS").unwrap_or_default();
    assert!(users.split(',').any(|u| u == name), "kafka.sh made user {name}: {users}");
    name.to_owned()
}

/// `herald <args>` on the SASL_SSL listener as `name`.
fn role_as(
    env: &TestEnv,
    listener: &SecureListener,
    name: &str,
    args: &[&str],
    log: &Path,
) -> Command {
    let mut command = secure_role_as(env, listener, (&user(name), &listener.password), args, log);
    command.env("RUST_LOG", "info");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_and_the_set_up_command_work_as_users_holding_only_the_acls_herald_acls_lists() {
    let Some(env) = TestEnv::on_kafka().await else { return };
    let Some(listener) = secure_listener() else { return };
    let clients = [
        "ingest",
        "enrich",
        "dispatch",
        "topics-apply",
        "topics-check",
        "groups",
        "groups-reset",
        "dlq",
        "dlq-redrive",
        "replay",
        "directory-import",
        "produce",
    ];
    grant(&listed_grants(&env, &clients));
    let key = env.directory_key().await;
    let log = |name: &str| env.dir.path().join(format!("{name}.log"));

    // The operator's set-up step, as its own user: every topic is as defined already.
    let apply = role_as(&env, &listener, "herald-operator", &["topics", "apply"], &log("apply"))
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    let applied = std::fs::read_to_string(log("apply")).unwrap();
    assert!(apply.status.success(), "topics apply as herald-operator: {applied}");

    let api = herald_testkit::free_port().unwrap();
    let ops = herald_testkit::free_port().unwrap();
    let mut ingest = role_as(&env, &listener, "herald-ingest", &["ingest"], &log("ingest"));
    ingest
        .env("HERALD__INGEST__LISTEN", format!("127.0.0.1:{api}"))
        .env("HERALD__OPS__LISTEN", format!("127.0.0.1:{ops}"));
    let roles = [
        Running::spawn(&mut ingest),
        Running::spawn(&mut role_as(
            &env,
            &listener,
            "herald-enricher",
            &["enrich"],
            &log("enrich"),
        )),
        Running::spawn(&mut role_as(
            &env,
            &listener,
            "herald-dispatch",
            &["dispatch", "--channel", "email"],
            &log("dispatch"),
        )),
    ];

    let http = reqwest::Client::new();
    let url = |path: &str| format!("http://127.0.0.1:{api}{path}");
    // The directory API writes the user through the directory's topic; the enricher applies it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let created = loop {
        let answer = http
            .put(url("/v1/users/acl"))
            .bearer_auth(&key)
            .json(&json!({"email": "acl@example.com"}))
            .send()
            .await;
        if let Ok(answer) = answer {
            break answer;
        }
        assert!(Instant::now() < deadline, "the API never answered: {}", read(&log("ingest")));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(created.status().is_success(), "{:?}", created.text().await);
    // Now, and scheduled a second ahead (the scheduler's group and the delay tiers).
    let now = email_body("acl", "Now", "under ACLs");
    let mut later: serde_json::Value =
        serde_json::from_str(&email_body("acl", "Later", "under ACLs")).unwrap();
    let send_at = std::time::SystemTime::now() + Duration::from_secs(2);
    later["send_at"] = humantime::format_rfc3339_millis(send_at).to_string().into();
    let mut ids = Vec::new();
    for body in [now, later.to_string()] {
        let answer = http
            .post(url("/v1/notifications"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = answer.status().as_u16();
        let answer: serde_json::Value = answer.json().await.unwrap();
        assert_eq!(status, 202, "{answer}");
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    for subject in ["Now", "Later"] {
        env.mail
            .wait_for(Duration::from_secs(60), |m| m.header("Subject").as_deref() == Some(subject))
            .await
            .unwrap_or_else(|| panic!("{subject} delivered: {}", read(&log("dispatch"))));
    }
    // The status sink (ingest's group) read the dispatcher's events.
    for id in &ids {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status: serde_json::Value = http
                .get(url(&format!("/v1/notifications/{id}")))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if status["state"] == "sent" {
                break;
            }
            assert!(Instant::now() < deadline, "{id} never shown sent: {status}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // What an operator reads of the groups, as the operator.
    let lag = role_as(
        &env,
        &listener,
        "herald-operator",
        &["groups", "lag", "--group", "dispatch-email"],
        &log("lag"),
    )
    .stdout(Stdio::piped())
    .output()
    .unwrap();
    assert!(lag.status.success(), "groups lag as herald-operator: {}", read(&log("lag")));
    let lag = String::from_utf8(lag.stdout).unwrap();
    // The group's committed offsets, which only Describe on the group shows.
    let email = env.topics().channel(herald_schemas::Channel::Email);
    let committed = lag.lines().any(|line| {
        let columns: Vec<&str> = line.split('\t').collect();
        columns.first() == Some(&email.as_str()) && columns.get(2).is_some_and(|c| *c != "-")
    });
    assert!(committed, "the dispatcher's commits: {lag}");

    // The operator's other commands, each as the user `herald acls` grants it to.
    let run = |user: &str, args: &[&str], name: &str| {
        let out = role_as(&env, &listener, user, args, &log(name))
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), read(&log(name)));
        assert!(out.status.success(), "{args:?} as {user}: {said}");
        said
    };
    run("herald-setup-check", &["topics", "apply", "--check"], "check");
    let users = env.dir.path().join("users.jsonl");
    std::fs::write(
        &users,
        r#"{"kind":"user","user_id":"imported","email":"imported@example.com"}"#,
    )
    .unwrap();
    run("herald-operator", &["directory", "import", "--file", users.to_str().unwrap()], "import");
    let requests = env.dir.path().join("requests.jsonl");
    let line = r#"{"recipient": {"user_id": "imported"}, "channels": ["email"], "email": {"subject": "Produced", "text": "by the operator"}}"#;
    std::fs::write(&requests, line).unwrap();
    let produced =
        run("herald-operator", &["produce", "--file", requests.to_str().unwrap()], "produce");
    assert!(produced.contains("produced 1"), "{produced}");
    env.mail
        .wait_for(Duration::from_secs(60), |m| m.to == ["imported@example.com"])
        .await
        .expect("the imported user got the produced request");
    run("herald-operator", &["dlq", "list"], "dlq");
    let replayed = run("herald-operator", &["replay", "--from", "1h", "--dry-run"], "replay");
    assert!(replayed.contains("would be replayed"), "{replayed}");
    for role in roles {
        role.terminate();
    }
    // With the roles stopped, what an operator moves (shown, not done).
    let reset = ["groups", "reset-offsets", "--group", "dispatch-email", "--to-datetime", "1h"];
    run("herald-operator", &[&reset[..], &["--dry-run"]].concat(), "reset");
    run("herald-operator", &["dlq", "redrive", "--dry-run"], "redrive");
    for name in ["ingest", "enrich", "dispatch"] {
        let text = read(&log(name));
        assert!(!text.contains("authoriz"), "{name} was refused nothing: {text}");
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_missing_one_listed_acl_stops_as_it_starts_naming_the_permission() {
    let Some(env) = TestEnv::on_kafka().await else { return };
    let Some(listener) = secure_listener() else { return };
    grant(&listed_grants(&env, &["ingest", "enrich", "dispatch"]));
    let topics = env.topics();
    // One ACL taken away from each role: a topic it only writes (the start-up check finds
    // it), a group it joins and a topic it reads but also writes (still visible to it: the
    // consumer finds them, and stops the role).
    let cases = [
        ("herald-ingest", vec!["ingest"], "Write", "topic", topics.requests()),
        ("herald-enricher", vec!["enrich"], "Read", "group", env.group("enricher-bulk")),
        (
            "herald-dispatch",
            vec!["dispatch", "--channel", "email"],
            "Read",
            "topic",
            topics.channel(herald_schemas::Channel::Email),
        ),
    ];
    for (name, args, operation, kind, resource) in cases {
        change_acl(&env, "--remove", &format!("User:{name}"), operation, (kind, &resource));
        let log = env.dir.path().join(format!("{name}.log"));
        let mut command = role_as(&env, &listener, name, &args, &log);
        if name == "herald-ingest" {
            let port = herald_testkit::free_port().unwrap();
            command.env("HERALD__INGEST__LISTEN", format!("127.0.0.1:{port}"));
        }
        let started = Instant::now();
        let mut child = Running::spawn(&mut command);
        let status = loop {
            if let Some(status) = child.try_wait() {
                break status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{name} still runs: {}",
                read(&log)
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(!status.success(), "{name} exits with an error");
        let text = read(&log);
        let line = text.lines().find(|l| l.contains("authorizer denies"));
        let line = line.unwrap_or_else(|| panic!("{name} names the refusal: {text}"));
        eprintln!("{name} without {operation} on {kind} {resource}: {line}");
        assert!(line.contains(&format!("User:{name}")), "names the principal: {line}");
        assert!(
            line.contains(operation) && line.contains(&format!("{kind} {resource}"))
                || line.contains(&format!("{operation} on the group and on each of"))
                    && line.contains(&format!("\"{resource}\"")),
            "names {operation} on {kind} {resource}: {line}"
        );
    }
    // Write taken from a topic the role also reads: it starts, and the first record it
    // writes there is refused by name; the caller is told to retry (503).
    let events = topics.events();
    change_acl(&env, "--remove", "User:herald-ingest", "Write", ("topic", &events));
    change_acl(&env, "--add", "User:herald-ingest", "Write", ("topic", &topics.requests()));
    let log = env.dir.path().join("ingest-events.log");
    let port = herald_testkit::free_port().unwrap();
    let mut command = role_as(&env, &listener, "herald-ingest", &["ingest"], &log);
    command.env("HERALD__INGEST__LISTEN", format!("127.0.0.1:{port}"));
    let mut ingest = Running::spawn(&mut command);
    let key = env.api_key().await;
    let body = email_body("nobody", "Refused", "by the authorizer");
    let answer = send_when_up(&mut ingest, port, &key, &body).await;
    assert_eq!(answer.status().as_u16(), 503, "{:?}", answer.text().await);
    let text = read(&log);
    let named = format!("denies Write on topic {events} to User:herald-ingest");
    assert!(text.contains(&named), "the log names {named}: {text}");
}
