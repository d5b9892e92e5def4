//! A registry that grants the roles read rights only, over HTTPS with a client certificate:
//! with `schema_registry.auto_register` off, a role starts only once `herald schemas
//! register` (the one writer) put Herald's schemas there, says so when they are missing,
//! and never writes the registry itself.

use std::process::{Command, Output};

use crate::support::{Running, TestEnv, email_body, herald_command, send_when_up};

/// `herald` with the run's registry behind the TLS terminator that requires a client
/// certificate, reached with the CA and certificate given by environment variables, as a
/// deployment configures it.
fn over_mutual_tls(env: &TestEnv, auto_register: bool) -> Option<Command> {
    let var = |name: &str| herald_testkit::required(name, "Apicurio Registry over HTTPS");
    let mut command = herald_command(env);
    command
        .env("HERALD__SCHEMA_REGISTRY__URL", var("HERALD_TEST_REGISTRY_MTLS")?)
        .env("HERALD__SCHEMA_REGISTRY__CA_FILE", var("HERALD_TEST_REGISTRY_CA")?)
        .env("HERALD__SCHEMA_REGISTRY__CERT_FILE", var("HERALD_TEST_REGISTRY_CERT")?)
        .env("HERALD__SCHEMA_REGISTRY__KEY_FILE", var("HERALD_TEST_REGISTRY_KEY")?)
        .env("HERALD__SCHEMA_REGISTRY__AUTO_REGISTER", auto_register.to_string())
        .env("RUST_BACKTRACE", "0");
    Some(command)
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The subjects of this test's topics the registry has, each asked for by name (a
/// registry's list of every subject may be cut short).
async fn subjects(env: &TestEnv) -> Vec<String> {
    let mut present = Vec::new();
    for (topic, _) in env.topics().written_records() {
        let subject = format!("{topic}-value");
        let url = format!("{}/subjects/{subject}/versions", env.registry);
        let status = reqwest::get(url).await.unwrap().status();
        assert!(status.is_success() || status == 404, "{subject}: {status}");
        if status.is_success() {
            present.push(subject);
        }
    }
    present
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_register_off_roles_start_once_herald_schemas_register_ran_and_never_write_the_registry()
 {
    let Some(env) = TestEnv::on_kafka().await else { return };
    let Some(mut check) = over_mutual_tls(&env, false) else { return };
    let written = env.topics().written_records();

    // Nothing registered: the check lists every subject and fails.
    let output = check.args(["schemas", "register", "--check"]).output().unwrap();
    let listed = text(&output);
    assert!(!output.status.success(), "{listed}");
    assert_eq!(listed.lines().filter(|l| l.starts_with("missing: ")).count(), written.len());
    assert!(listed.contains("run herald schemas register"), "{listed}");

    // A role stops at start-up naming a subject and the command that registers it.
    let output = over_mutual_tls(&env, false).unwrap().arg("enrich").output().unwrap();
    let stopped = text(&output);
    assert!(!output.status.success(), "{stopped}");
    assert!(
        stopped.contains("is not registered under subject")
            && stopped.contains("herald schemas register"),
        "{stopped}"
    );
    assert_eq!(subjects(&env).await, Vec::<String>::new(), "a read-only role wrote the registry");

    // The one writer registers them all; the check passes.
    let output = over_mutual_tls(&env, false).unwrap().args(["schemas", "register"]).output();
    let registered = text(&output.unwrap());
    assert_eq!(registered.lines().filter(|l| l.starts_with("registered ")).count(), written.len());
    assert_eq!(subjects(&env).await.len(), written.len(), "{registered}");
    let mut check = over_mutual_tls(&env, false).unwrap();
    let output = check.args(["schemas", "register", "--check"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output));

    // Now the send API starts, read-only, over mutual TLS, and writes a request with the
    // registered id.
    let port = herald_testkit::free_port().unwrap();
    let mut ingest = over_mutual_tls(&env, false).unwrap();
    ingest.arg("ingest").env("HERALD__INGEST__LISTEN", format!("127.0.0.1:{port}"));
    let mut ingest = Running::spawn(ingest.stdout(std::process::Stdio::null()));
    let key = env.api_key().await;
    let body = email_body("reader", "Read-only", "registry");
    let answer = send_when_up(&mut ingest, port, &key, &body).await;
    assert_eq!(answer.status().as_u16(), 202, "{:?}", answer.text().await);
    assert_eq!(subjects(&env).await.len(), written.len(), "nothing more was registered");
}

/// A host that reaches the registry through a proxy: the one `schema_registry.proxy` names,
/// else the environment's (`HTTP_PROXY`, `HTTPS_PROXY`), and none for hosts in `NO_PROXY`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_calls_go_through_the_configured_or_the_environments_proxy() {
    let env = TestEnv::start().await;
    let proxy = herald_testkit::Tinyproxy::start(&env.dir.path().join("proxy")).unwrap();
    let register = |vars: &[(&str, &str)]| {
        let mut command = herald_command(&env);
        command.args(["schemas", "register"]).env("RUST_BACKTRACE", "0");
        for var in
            ["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"]
        {
            command.env_remove(var);
        }
        command.envs(vars.iter().copied());
        let output = command.output().unwrap();
        assert!(output.status.success(), "{vars:?}: {}", text(&output));
    };
    let subject = format!("{}-value", env.topics().requests());
    let carried = |proxy: &herald_testkit::Tinyproxy| {
        proxy.requests().iter().filter(|r| r.contains(&subject)).count()
    };

    register(&[("HERALD__SCHEMA_REGISTRY__PROXY", proxy.url())]);
    let by_setting = carried(&proxy);
    assert!(by_setting > 0, "schema_registry.proxy: {:?}", proxy.requests());
    register(&[("HTTP_PROXY", proxy.url())]);
    let by_environment = carried(&proxy);
    assert!(by_environment > by_setting, "HTTP_PROXY: {:?}", proxy.requests());
    register(&[("HTTP_PROXY", proxy.url()), ("NO_PROXY", "127.0.0.1")]);
    assert_eq!(carried(&proxy), by_environment, "NO_PROXY");
}
