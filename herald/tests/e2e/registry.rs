//! The schema registry as users meet it, a real one (Apicurio): a registry that refuses
//! Herald's schema, or cannot be reached, stops a role at start-up with the subject and the
//! reason; during an outage of a running one, deliveries go on with the schema ids Herald
//! has seen, and a record written with a schema it has not seen waits until the registry
//! answers again, then is delivered: nothing is lost or dead-lettered for the outage.

use crate::support;

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use apache_avro::Schema;
use herald_runtime::kafka::Producer;
use herald_schemas::records::Datum;
use herald_schemas::{
    AvroCodec, EmailContent, NotificationRequest, Recipient, Record, RegistryConfig,
};
use serde::{Deserialize, Serialize};
use support::{TestEnv, add_user, email_body, herald_command, herald_output};

/// Runs a role until it exits (it must, within 30 s); its output.
fn role_until_exit(env: &TestEnv, role: &str, registry: &str) -> Output {
    let port = herald_testkit::free_port().unwrap();
    let mut child = herald_command(env)
        .arg(role)
        .env("HERALD__SCHEMA_REGISTRY__URL", registry)
        .env("HERALD__INGEST__LISTEN", format!("127.0.0.1:{port}"))
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("herald {role} still runs after 30 s: it should have stopped at start-up");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_whose_schema_the_registry_refuses_stops_at_start_up_naming_the_subject_and_why() {
    let Some(env) = TestEnv::on_kafka().await else { return };
    // Someone registered a NotificationRequest under the requests subject whose accepted_at
    // is a string: Herald's (a long) cannot read what it describes, and BACKWARD refuses it.
    let subject = format!("{}-value", env.topics().requests());
    let theirs = NotificationRequest::schema_json().replace(
        r#""name": "accepted_at", "type": {"type": "long", "logicalType": "timestamp-millis"}"#,
        r#""name": "accepted_at", "type": "string""#,
    );
    let registered = reqwest::Client::new()
        .post(format!("{}/subjects/{subject}/versions", env.registry))
        .json(&serde_json::json!({ "schema": theirs }))
        .send()
        .await
        .unwrap();
    assert!(registered.status().is_success(), "{:?}", registered.text().await);

    let output = role_until_exit(&env, "enrich", &env.registry);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&format!(
            "refused Herald's NotificationRequest schema under subject {subject}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("409"), "with the registry's answer: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_stops_at_start_up_when_the_registry_cannot_be_reached() {
    let Some(env) = TestEnv::on_kafka().await else { return };
    let nowhere = format!("http://127.0.0.1:{}", herald_testkit::free_port().unwrap());
    for role in ["ingest", "enrich"] {
        let output = role_until_exit(&env, role, &nowhere);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{role}");
        assert!(
            stderr.contains(&format!("cannot reach the schema registry at {nowhere}")),
            "{role}: {stderr}"
        );
    }
}

/// Herald's NotificationRequest plus a field with a default: a producer's newer, compatible
/// version, whose schema id Herald has not seen.
#[derive(Debug, Serialize, Deserialize)]
struct RequestWithTenant {
    notification_id: String,
    accepted_at: i64,
    client_id: Option<String>,
    recipient: Recipient,
    channels: Vec<String>,
    category: String,
    from: Option<herald_schemas::Sender>,
    email: Option<EmailContent>,
    sms: Option<herald_schemas::SmsContent>,
    push: Option<herald_schemas::PushContent>,
    metadata: BTreeMap<String, String>,
    tenant: String,
}

impl Record for RequestWithTenant {
    const NAME: &'static str = "RequestWithTenant";
    fn schema_json() -> &'static str {
        static JSON: OnceLock<String> = OnceLock::new();
        JSON.get_or_init(|| {
            let mut json: serde_json::Value =
                serde_json::from_str(NotificationRequest::schema_json()).unwrap();
            let field = serde_json::json!({"name": "tenant", "type": "string", "default": "main"});
            json["fields"].as_array_mut().unwrap().push(field);
            json.to_string()
        })
    }
    fn schema() -> &'static Schema {
        static SCHEMA: OnceLock<Schema> = OnceLock::new();
        SCHEMA.get_or_init(|| Schema::parse_str(Self::schema_json()).unwrap())
    }
    fn datum() -> &'static Datum {
        static DATUM: OnceLock<Datum> = OnceLock::new();
        DATUM.get_or_init(|| Datum::of(Self::schema()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_a_registry_outage_seen_schemas_keep_deliveries_going_and_an_unseen_one_waits_until_it_is_back()
 {
    let Some(mut env) = TestEnv::on_kafka().await else { return };
    let registry = herald_testkit::Apicurio::start(&env.dir.path().join("registry")).await.unwrap();
    env.config.schema_registry.url = registry.url().to_owned();
    env.registry = registry.url().to_owned();
    for user in ["o1", "o2", "o3"] {
        add_user(&env, user, &format!("{user}@example.com")).await;
    }
    let pipeline = env.pipeline().await;
    let key = env.api_key().await;
    let (status, body) = pipeline.post(Some(&key), &email_body("o1", "Before", "the outage")).await;
    assert_eq!(status, 202, "{body}");
    env.mail.wait_for(Duration::from_secs(40), |m| m.to == ["o1@example.com"]).await.unwrap();

    // A service's producer with a newer, compatible schema encodes its record while the
    // registry answers (registering the version and caching its id)...
    let topic = env.topics().requests();
    let newer = AvroCodec::new(&RegistryConfig::new(registry.url())).unwrap();
    let record = RequestWithTenant {
        notification_id: uuid::Uuid::now_v7().to_string(),
        accepted_at: herald_schemas::now_millis(),
        client_id: None,
        recipient: Recipient { user_id: Some("o3".into()), ..Recipient::default() },
        channels: vec![],
        category: "transactional".into(),
        from: None,
        email: Some(EmailContent {
            subject: "Unseen".into(),
            text: Some("schema".into()),
            html: None,
        }),
        sms: None,
        push: None,
        metadata: BTreeMap::new(),
        tenant: "eu".into(),
    };
    let bytes = newer.encode(&topic, &record).await.unwrap();

    // ...then the registry goes down.
    registry.kill().await.unwrap();
    let (status, body) = pipeline.post(Some(&key), &email_body("o2", "During", "the outage")).await;
    assert_eq!(status, 202, "the send API writes with the id it has: {body}");
    env.mail
        .wait_for(Duration::from_secs(40), |m| m.to == ["o2@example.com"])
        .await
        .expect("delivered during the outage");

    let producer = Producer::new(&env.config.kafka, "newer-service").unwrap();
    producer.send(&topic, Some(b"o3"), &bytes, None).await.unwrap();
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        !env.mail.per_recipient().contains_key("o3@example.com"),
        "a record of a schema Herald has not seen cannot be read while the registry is down"
    );
    let letters = herald_output(&env, &["dlq", "list"]);
    assert!(letters.starts_with("0 dead letter(s)"), "it waits, not dead-lettered: {letters}");

    registry.restart().await.unwrap();
    let mail = env.mail.wait_for(Duration::from_secs(60), |m| m.to == ["o3@example.com"]).await;
    let mail = mail.expect("read and delivered once the registry is back");
    assert_eq!(mail.header("Subject").as_deref(), Some("Unseen"));
    let letters = herald_output(&env, &["dlq", "list"]);
    assert!(letters.starts_with("0 dead letter(s)"), "{letters}");
    pipeline.stop().await;
}
