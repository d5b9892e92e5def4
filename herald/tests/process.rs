//! A role as operators run it: its own `herald` process, configured by environment, stopped
//! with SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};

use std::time::{Duration, Instant};

use herald_runtime::kafka::Producer;
use herald_schemas::{Channel, ChannelMessage, EmailContent};
use support::TestEnv;

fn dispatcher_process(env: &TestEnv) -> Child {
    support::herald_command(env)
        .args(["dispatch", "--channel", "email"])
        // Only the commit made while draining on SIGTERM can record progress.
        .env("HERALD__KAFKA__CONSUMER__AUTO_COMMIT_INTERVAL_MS", "600000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn terminate(mut child: Child) -> std::process::ExitStatus {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "did not exit within 20 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn send(env: &TestEnv, target: &str, subject: &str) {
    let message = ChannelMessage {
        notification_id: uuid::Uuid::now_v7().to_string(),
        channel: "email".into(),
        target: target.into(),
        user_id: None,
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
    };
    let topic = env.topics().channel(Channel::Email);
    let payload = env.codec().encode(&topic, &message).await.unwrap();
    let producer = Producer::new(&env.config.kafka, "test").unwrap();
    producer.send(&topic, Some(target.as_bytes()), &payload, None).await.unwrap();
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
    let status = terminate(dispatcher);
    assert!(status.success(), "clean exit after SIGTERM: {status}");

    send(&env, "second@example.com", "second").await;
    let dispatcher = dispatcher_process(&env);
    env.mail
        .wait_for(Duration::from_secs(30), |m| m.to == ["second@example.com"])
        .await
        .expect("second delivered");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(terminate(dispatcher).success());

    let to: Vec<Vec<String>> = env.mail.received().into_iter().map(|m| m.to).collect();
    assert_eq!(
        to,
        [["first@example.com"], ["second@example.com"]],
        "the first was not resent after the restart"
    );
}
