//! The `herald` binary as the tests run it: configured for a test's environment as an
//! operator would configure it.

use std::time::{Duration, Instant};

use super::TestEnv;

/// The `herald` binary, configured by environment for `env` as an operator would.
pub fn herald_command(env: &TestEnv) -> std::process::Command {
    let c = &env.config;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command
        .env_remove("HERALD_CONFIG")
        .env("RUST_LOG", std::env::var("HERALD_TEST_CHILD_LOG").unwrap_or_else(|_| "warn".into()))
        .env("HERALD__KAFKA__BOOTSTRAP_SERVERS", &c.kafka.bootstrap_servers)
        .env("HERALD__KAFKA__TOPIC_PREFIX", &c.kafka.topic_prefix)
        .env("HERALD__KAFKA__GROUP_PREFIX", &c.kafka.group_prefix)
        .env(
            "HERALD__KAFKA__CONSUMER__SESSION_TIMEOUT_MS",
            c.kafka.consumer.session_timeout_ms.to_string(),
        )
        .env(
            "HERALD__KAFKA__CONSUMER__HEARTBEAT_INTERVAL_MS",
            c.kafka.consumer.heartbeat_interval_ms.to_string(),
        )
        .env(
            "HERALD__KAFKA__CONSUMER__MAX_POLL_INTERVAL_MS",
            c.kafka.consumer.max_poll_interval_ms.to_string(),
        )
        .env(
            "HERALD__KAFKA__CONSUMER__DRAIN_DEADLINE_MS",
            c.kafka.consumer.drain_deadline_ms.to_string(),
        )
        .env("HERALD__SCHEMA_REGISTRY__URL", &c.schema_registry.url)
        .env("HERALD__DISPATCH__EMAIL__SMTP__HOST", &c.dispatch.email.smtp.host)
        .env("HERALD__DISPATCH__EMAIL__SMTP__PORT", c.dispatch.email.smtp.port.to_string())
        .env("HERALD__DISPATCH__LEDGER__PATH", &c.dispatch.ledger.path)
        .env("HERALD__ENRICHER__DIRECTORY_PATH", &c.enricher.directory_path)
        .env("HERALD__INGEST__STORE_PATH", &c.ingest.store_path);
    let delays: Vec<String> = c.dispatch.retry.delays_ms.iter().map(u64::to_string).collect();
    command.env("HERALD__DISPATCH__RETRY__DELAYS_MS", format!("[{}]", delays.join(",")));
    if env.stores_on_cql() {
        for store in ["ENRICHER", "DISPATCH__LEDGER", "INGEST"] {
            command.envs(herald_testkit::cql::env_vars(store, &c.enricher.scylla));
        }
        command
            .env("HERALD__ENRICHER__DIRECTORY_BACKEND", "scylla")
            .env("HERALD__DISPATCH__LEDGER__BACKEND", "scylla")
            .env("HERALD__INGEST__STORE_BACKEND", "scylla");
    }
    command
}

/// Runs `herald <args>` to completion; returns stdout, failing the test on a non-zero exit.
pub fn herald_output(env: &TestEnv, args: &[&str]) -> String {
    let output = herald_command(env).args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "herald {args:?} failed: {stderr}");
    String::from_utf8(output.stdout).unwrap()
}

/// Waits, up to `wait`, until `group` has committed everything it read (`herald groups lag`
/// says total lag 0): consumers commit a moment after they finish.
pub async fn wait_until_caught_up(env: &TestEnv, group: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let lag = herald_output(env, &["groups", "lag", "--group", group]);
        if lag.starts_with("total lag 0") {
            return;
        }
        assert!(Instant::now() < deadline, "{group} never caught up: {lag}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A child process (a `herald` role, most often), killed when dropped whether the test
/// passed or not.
pub struct Running(Option<std::process::Child>);

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Running {
    pub fn spawn(command: &mut std::process::Command) -> Self {
        Self(Some(command.spawn().unwrap()))
    }

    /// Its exit status, if it exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.0.as_mut().and_then(|child| child.try_wait().unwrap())
    }

    /// SIGKILL, as a crash: nothing drains.
    pub fn kill(mut self) {
        let mut child = self.0.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Sends SIGTERM and waits up to 20 s for the exit (failing the test past it).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().unwrap();
        let pid = child.id().to_string();
        let sent = std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "did not exit within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Posts `body` to the send API of the `ingest` process listening on `port` until it answers
/// (it may still be starting), for at most 60 s; fails if the process stops first.
pub async fn send_when_up(
    ingest: &mut Running,
    port: u16,
    key: &str,
    body: &str,
) -> reqwest::Response {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let sent = http
            .post(format!("http://127.0.0.1:{port}/v1/notifications"))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        if let Ok(answer) = sent {
            return answer;
        }
        assert!(ingest.try_wait().is_none(), "the send API stopped at start-up");
        assert!(Instant::now() < deadline, "the send API never answered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
