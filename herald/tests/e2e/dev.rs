//! `herald dev`, the README's first command, as a newcomer runs it: the user and device its
//! banner registers get the push it sends (in the push sandbox), and nothing once erased;
//! the email it sends is delivered to the mailbox, the template example reaches the SMS
//! sandbox in each user's language, and Ctrl-C stops everything, the broker it started
//! included.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// What the banner tells a newcomer.
#[derive(Debug, Default)]
struct Banner {
    api: String,
    /// Where the process's metrics are.
    metrics: String,
    broker: String,
    mailbox: String,
    stores: String,
    key: String,
    /// The printed calls, in order: method, URL and body (a bare `-d` line is another body
    /// for the call before it).
    examples: Vec<(String, String, Option<String>)>,
}

impl Banner {
    fn parse(lines: &[String]) -> Self {
        let mut banner = Banner::default();
        for line in lines {
            let line = line.trim();
            if let Some(url) = line.strip_prefix("send API") {
                banner.api = url.split_whitespace().next().unwrap().to_owned();
            } else if let Some(url) = line.strip_prefix("metrics") {
                banner.metrics = url.trim().to_owned();
            } else if let Some(address) = line.strip_prefix("Kafka (Tansu)") {
                banner.broker = address.trim().to_owned();
            } else if let Some(stores) = line.strip_prefix("stores") {
                banner.stores = stores.trim().to_owned();
            } else if let Some(url) = line.strip_prefix("mailbox") {
                banner.mailbox = url.trim().trim_end_matches('/').to_owned();
            } else if let Some(header) = line.strip_prefix("-H 'Authorization: Bearer ") {
                banner.key = header.trim_end_matches(['\'', ' ', '\\']).to_owned();
            } else if let Some(call) = line.strip_prefix("curl -sS -X ") {
                let mut words = call.split_whitespace();
                let (method, url) = (words.next().unwrap(), words.next().unwrap());
                banner.examples.push((method.to_owned(), url.to_owned(), None));
                if let Some(key) = call.split("Bearer ").nth(1) {
                    banner.key = key.trim_end_matches('\'').to_owned();
                }
            } else if let Some(body) = line.strip_prefix("-d '") {
                let body = body.trim_end_matches('\'').to_owned();
                let last = banner.examples.last_mut().expect("a curl before its body");
                if last.2.is_some() {
                    let again = (last.0.clone(), last.1.clone(), Some(body));
                    banner.examples.push(again);
                } else {
                    last.2 = Some(body);
                }
            }
        }
        banner
    }
}

/// `herald dev` in its own data directory; killed when the test ends, passed or not.
struct Dev {
    child: Option<Child>,
    _data: tempfile::TempDir,
}

impl Drop for Dev {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Dev {
    /// Starts it on free ports with
    /// `config` (a file in its data directory, if any) and waits for the banner's last line.
    fn start(config: Option<&str>) -> (Self, Banner) {
        let data = tempfile::tempdir().unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
        if let Some(config) = config {
            let file = data.path().join("config.toml");
            std::fs::write(&file, config).unwrap();
            command.arg("--config").arg(file);
        }
        let mut child = command
            .args(["dev", "--api-port", "0", "--broker-port", "0", "--registry-port", "0"])
            .args(["--smtp-port", "0", "--mailbox-port", "0", "--ops-port", "0", "--data-dir"])
            .arg(data.path())
            .env("RUST_LOG", "warn")
            .env_remove("HERALD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let dev = Dev { child: Some(child), _data: data };
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines_rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no banner within 120 s; printed so far: {lines:#?}"));
            let last = line.contains("herald dispatch --channel email");
            lines.push(line);
            if last {
                break;
            }
        }
        (dev, Banner::parse(&lines))
    }

    fn interrupt_and_wait(&mut self, within: Duration) -> std::process::ExitStatus {
        let child = self.child.as_mut().unwrap();
        let sent = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "herald dev still running {within:?} after Ctrl-C");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

async fn get_until(
    http: &reqwest::Client,
    url: &str,
    what: &str,
    found: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = http.get(url).send().await.unwrap().text().await.unwrap();
        if found(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "{what} not at {url} within 30 s; last answer: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn herald_dev_delivers_its_printed_examples_and_ctrl_c_stops_it_and_its_broker() {
    let (dev, banner) = Dev::start(None);
    assert!(banner.stores.contains("directory: SQLite"), "{banner:?}");
    deliver_the_examples_then_interrupt(dev, banner).await;
}

/// `herald dev` pointed at a CQL node by its configuration: it creates the stores' tables
/// there, seeds them, and the pipeline runs on them.
#[tokio::test]
async fn herald_dev_with_every_store_on_a_cql_node_delivers_its_printed_examples() {
    let Some(cql) = herald_testkit::cql::node("herald_dev") else { return };
    let mut config = String::new();
    for (section, backend) in [
        ("enricher", "directory_backend"),
        ("dispatch.ledger", "backend"),
        ("ingest", "store_backend"),
    ] {
        // The node's TLS and login settings too, as an operator writes them.
        let mut table = toml::Table::new();
        table.insert(backend.into(), "scylla".into());
        table.insert("scylla".into(), toml::Value::try_from(&cql).unwrap());
        for part in section.rsplit('.') {
            table = toml::Table::from_iter([(part.to_owned(), toml::Value::Table(table))]);
        }
        config.push_str(&toml::to_string(&table).unwrap());
    }
    let (dev, banner) = Dev::start(Some(&config));
    let on_cql = format!("CQL node {} (keyspace {})", cql.nodes.join(","), cql.keyspace);
    assert_eq!(
        banner.stores,
        format!("directory: {on_cql}, ledger: {on_cql}, ingest: {on_cql}"),
        "{banner:?}"
    );
    deliver_the_examples_then_interrupt(dev, banner).await;
}

async fn deliver_the_examples_then_interrupt(mut dev: Dev, banner: Banner) {
    herald_schemas::install_tls_provider();
    assert!(banner.key.starts_with("hrld_"), "an API key in the banner: {banner:?}");
    let calls: Vec<(&str, &str)> =
        banner.examples.iter().map(|(m, url, _)| (m.as_str(), url.as_str())).collect();
    let api = &banner.api;
    let (user, device, send) = (
        format!("{api}/v1/users/42"),
        format!("{api}/v1/users/42/devices/phone"),
        format!("{api}/v1/notifications"),
    );
    assert_eq!(
        calls,
        [
            ("PUT", user.as_str()),
            ("PUT", device.as_str()),
            ("POST", send.as_str()),
            ("DELETE", user.as_str()),
            ("POST", send.as_str()),
            ("POST", send.as_str()),
        ],
        "register, push, erase, the email and the template: {banner:?}"
    );
    let http = reqwest::Client::new();
    let call = |(method, url, body): &(String, String, Option<String>)| {
        let request = http
            .request(method.parse().unwrap(), url)
            .bearer_auth(&banner.key)
            .header("content-type", "application/json")
            .body(body.clone().unwrap_or_default());
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap_or_default())
        }
    };
    let status_of = |id: String| {
        let (http, api, key) = (&http, &banner.api, &banner.key);
        async move {
            let url = format!("{api}/v1/notifications/{id}");
            let answer = http.get(url).bearer_auth(key).send().await.unwrap();
            answer.json::<serde_json::Value>().await.unwrap()
        }
    };

    // Register, then push: the push reaches the sandbox with the registered token.
    assert_eq!(call(&banner.examples[0]).await.0, 201, "the user is created");
    assert_eq!(call(&banner.examples[1]).await.0, 201, "the device is registered");
    let (status, pushed) = call(&banner.examples[2]).await;
    assert_eq!(status, 202, "{pushed}");
    let pushed = pushed["id"].as_str().unwrap().to_owned();
    let sandbox = get_until(&http, &format!("{}/sandbox", banner.mailbox), "the push", |body| {
        body.contains(&pushed)
    })
    .await;
    assert!(sandbox.contains("fcm-token-of-jis-phone"), "{sandbox}");
    // Erased, the same push is skipped.
    assert_eq!(call(&banner.examples[3]).await.0, 204, "the user is erased");
    let (status, again) = call(&banner.examples[2]).await;
    assert_eq!(status, 202, "{again}");
    let again = again["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(30);
    let skipped = loop {
        let status = status_of(again.clone()).await;
        if status["state"] == "skipped" {
            break status;
        }
        assert!(Instant::now() < deadline, "the push to an erased user: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(skipped["skipped"][0]["reason"], "unknown_user", "{skipped}");

    let mut notification_ids = Vec::new();
    for example in &banner.examples[4..] {
        let (status, answer) = call(example).await;
        assert_eq!(status, 202, "the banner's example {example:?} is accepted: {answer}");
        notification_ids.push(answer["id"].as_str().unwrap().to_owned());
    }

    let mails = get_until(&http, &format!("{}/messages", banner.mailbox), "the email", |body| {
        body.contains(&notification_ids[0])
    })
    .await;
    assert!(mails.contains("Hello from Herald") && mails.contains("It works."), "{mails}");

    let sandbox = get_until(&http, &format!("{}/sandbox", banner.mailbox), "both SMS", |body| {
        body.contains("Your sign-in code is 123456") && body.contains("您的验证码是 123456")
    })
    .await;
    assert!(sandbox.contains(&notification_ids[1]), "{sandbox}");

    // The metrics are on the ops port, counting the calls above; never on the public one.
    let metrics = http.get(&banner.metrics).send().await.unwrap().text().await.unwrap();
    let sends = "herald_http_requests_total{route=\"/v1/notifications\",status=\"202\"}";
    assert!(metrics.lines().any(|l| l.starts_with(sends)), "{sends} at {}", banner.metrics);
    let public = http.get(format!("{api}/metrics")).send().await.unwrap().status();
    assert_eq!(public.as_u16(), 404, "the send API's port serves no metrics");
    assert!(TcpStream::connect(&banner.broker).is_ok(), "the broker answers at {}", banner.broker);
    let status = dev.interrupt_and_wait(Duration::from_secs(30));
    assert!(status.success(), "herald dev exits cleanly on Ctrl-C: {status}");
    assert!(
        TcpStream::connect(&banner.broker).is_err(),
        "the broker herald dev started ({}) stopped with it",
        banner.broker
    );
}
