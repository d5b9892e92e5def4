//! Herald on a Kafka listener with TLS and SASL/SCRAM-SHA-512, configured the way
//! production configures it (`security.protocol`, the CA, the user in `[kafka.properties]`,
//! the password from the environment): a notification goes through every role; wrong
//! credentials stop a role at start-up with the reason; no secret reaches a log.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Running, TestEnv, add_user, email_body, herald_command, send_when_up};

/// The run's SASL_SSL listener (`infra/engines/kafka.sh start --sasl-ssl`).
pub(crate) struct SecureListener {
    pub(crate) servers: String,
    ca: String,
    username: String,
    pub(crate) password: String,
}

pub(crate) fn secure_listener() -> Option<SecureListener> {
    let servers =
        herald_testkit::required("HERALD_TEST_KAFKA_SASL_SSL", "Kafka's SASL_SSL listener")?;
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let password = std::fs::read_to_string(var("HERALD_TEST_KAFKA_PASSWORD_FILE")).unwrap();
    Some(SecureListener {
        servers,
        ca: var("HERALD_TEST_KAFKA_CA"),
        username: var("HERALD_TEST_KAFKA_USERNAME"),
        password: password.trim().to_owned(),
    })
}

/// The `[kafka]` section of `infra/k8s/herald.toml`, pointed at the test's listener.
fn production_shaped_config(dir: &Path, listener: &SecureListener) -> PathBuf {
    let path = dir.join("secure.toml");
    let toml = format!(
        "[kafka]\n\
         bootstrap_servers = \"{servers}\"\n\
         [kafka.properties]\n\
         \"security.protocol\" = \"SASL_SSL\"\n\
         \"sasl.mechanism\" = \"SCRAM-SHA-512\"\n\
         \"ssl.ca.location\" = \"{ca}\"\n\
         [kafka.secret_properties]\n\
         \"sasl.username\" = {{ env = \"HERALD_KAFKA_USERNAME\" }}\n\
         \"sasl.password\" = {{ env = \"HERALD_KAFKA_PASSWORD\" }}\n",
        servers = listener.servers,
        ca = listener.ca,
    );
    std::fs::write(&path, toml).unwrap();
    path
}

/// `herald <args>` on the secure listener as the run's SASL user with `password`, logging at
/// debug level to `log`.
fn secure_role(
    env: &TestEnv,
    listener: &SecureListener,
    password: &str,
    args: &[&str],
    log: &Path,
) -> Command {
    secure_role_as(env, listener, (&listener.username, password), args, log)
}

/// `herald <args>` on the secure listener as `(user, password)`, logging at debug level to
/// `log`.
pub(crate) fn secure_role_as(
    env: &TestEnv,
    listener: &SecureListener,
    (user, password): (&str, &str),
    args: &[&str],
    log: &Path,
) -> Command {
    let mut command = herald_command(env);
    command
        .arg("--config")
        .arg(production_shaped_config(env.dir.path(), listener))
        .args(args)
        // The file's listener, not the plaintext one the test kit points roles at.
        .env("HERALD__KAFKA__BOOTSTRAP_SERVERS", &listener.servers)
        .env("HERALD_KAFKA_USERNAME", user)
        .env("HERALD_KAFKA_PASSWORD", password)
        .env("RUST_LOG", "debug,librdkafka=debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap());
    command
}

/// A child process killed when the test ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_goes_through_every_role_on_a_sasl_ssl_listener_no_secret_reaches_a_log_and_metrics_stay_off_the_api_port()
 {
    let Some(env) = TestEnv::on_kafka().await else { return };
    let Some(listener) = secure_listener() else { return };
    add_user(&env, "secure", "secure@example.com").await;
    let key = env.api_key().await;
    let api = herald_testkit::free_port().unwrap();
    let ops = herald_testkit::free_port().unwrap();
    let logs: Vec<PathBuf> = ["ingest", "enrich", "dispatch"]
        .iter()
        .map(|r| env.dir.path().join(format!("{r}.log")))
        .collect();
    let spawn = |args: &[&str], log: &Path, extra: &[(&str, String)]| {
        let mut command = secure_role(&env, &listener, &listener.password, args, log);
        for (name, value) in extra {
            command.env(name, value);
        }
        Running::spawn(&mut command)
    };
    let mut roles = [
        spawn(
            &["ingest"],
            &logs[0],
            &[
                ("HERALD__INGEST__LISTEN", format!("127.0.0.1:{api}")),
                ("HERALD__OPS__LISTEN", format!("127.0.0.1:{ops}")),
            ],
        ),
        spawn(&["enrich"], &logs[1], &[]),
        spawn(&["dispatch", "--channel", "email"], &logs[2], &[]),
    ];

    let body = email_body("secure", "Over TLS", "and SCRAM");
    let accepted = send_when_up(&mut roles[0], api, &key, &body).await;
    let http = reqwest::Client::new();
    assert_eq!(accepted.status().as_u16(), 202, "{:?}", accepted.text().await);
    env.mail
        .wait_for(Duration::from_secs(60), |m| m.to == ["secure@example.com"])
        .await
        .expect("delivered through the SASL_SSL listener");
    // The send API's metrics are on its ops port, never on the API's.
    let metrics = http.get(format!("http://127.0.0.1:{ops}/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    let sent = "herald_http_requests_total{route=\"/v1/notifications\",status=\"202\"} 1";
    assert!(metrics.lines().any(|l| l == sent), "{sent} on the ops port:\n{metrics}");
    let public = http.get(format!("http://127.0.0.1:{api}/metrics")).send().await.unwrap();
    assert_eq!(public.status().as_u16(), 404, "the API's port serves no metrics");
    for role in roles {
        role.terminate();
    }

    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("DEBUG"), "{} logged at debug level", log.display());
        assert!(!text.contains(&listener.password), "{} holds the SASL password", log.display());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_kafka_credentials_stop_each_role_at_start_up_with_the_reason_and_never_the_password()
{
    let Some(env) = TestEnv::on_kafka().await else { return };
    let Some(listener) = secure_listener() else { return };
    let wrong = "not-the-password-4f1c";
    let roles: [&[&str]; 3] = [&["ingest"], &["enrich"], &["dispatch", "--channel", "email"]];
    for args in roles {
        let log = env.dir.path().join("wrong.log");
        let started = Instant::now();
        let mut command = secure_role(&env, &listener, wrong, args, &log);
        if args == ["ingest"] {
            let port = herald_testkit::free_port().unwrap();
            command.env("HERALD__INGEST__LISTEN", format!("127.0.0.1:{port}"));
        }
        let mut child = Running::spawn(&mut command);
        let status = loop {
            if let Some(status) = child.try_wait() {
                break status;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "{args:?} still runs: it hangs");
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(!status.success(), "{args:?} exits with an error");
        let text = std::fs::read_to_string(&log).unwrap();
        let error = text.lines().find(|l| l.contains("refused this client"));
        let error = error.unwrap_or_else(|| panic!("{args:?} names the refusal: {text}"));
        assert!(error.contains("Authentication failed"), "{args:?} says why: {error}");
        assert!(!text.contains(wrong), "{args:?} logged the password it was given");
    }
}
