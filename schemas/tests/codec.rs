//! The Confluent wire format through a schema registry: what producers and consumers of
//! `herald.requests` rely on. Every test runs against the development registry and against
//! a real one, the run's Apicurio Registry (its Confluent-compatible API, compatibility level
//! BACKWARD), each test under topic names of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use herald_schemas::records::Datum;
use herald_schemas::{
    AvroCodec, DecodeError, EmailContent, NotificationRequest, Recipient, Record, RegistryConfig,
};
use herald_testkit::DevRegistry;
use serde::{Deserialize, Serialize};

#[path = "codec/access.rs"]
mod access;

/// A registry the tests run against: its base URL, and what it is for messages.
struct Registry {
    name: &'static str,
    url: String,
}

/// The development registry (its own, in this process) and the run's Apicurio Registry
/// (`HERALD_TEST_REGISTRY`; skipped, saying so, without it unless `HERALD_REQUIRE_ENGINES`).
async fn registries() -> Vec<Registry> {
    let dev = DevRegistry::default().spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let mut all = vec![Registry { name: "development registry", url: format!("http://{dev}") }];
    if let Some(url) = herald_testkit::required("HERALD_TEST_REGISTRY", "Apicurio Registry") {
        all.push(Registry { name: "Apicurio Registry", url });
    }
    all
}

fn codec(registry: &Registry) -> AvroCodec {
    AvroCodec::new(&RegistryConfig::new(registry.url.clone())).unwrap()
}

/// A topic name no other test (or earlier run against the same registry) uses.
fn topic(name: &str) -> String {
    let unique =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("t{unique:x}p{}.{name}", std::process::id())
}

/// `GET <url><path>` as JSON.
async fn get_json(registry: &Registry, path: &str) -> serde_json::Value {
    herald_schemas::install_tls_provider();
    let response = reqwest::get(format!("{}{path}", registry.url)).await.unwrap();
    assert!(response.status().is_success(), "{}: GET {path}: {}", registry.name, response.status());
    response.json().await.unwrap()
}

fn request() -> NotificationRequest {
    NotificationRequest {
        notification_id: "0190f0a0-0000-7000-8000-000000000001".into(),
        accepted_at: 1_760_000_000_000,
        client_id: None,
        recipient: Recipient { user_id: Some("123456".into()), ..Recipient::default() },
        channels: vec![],
        category: "transactional".into(),
        from: None,
        email: Some(EmailContent {
            subject: "Your code".into(),
            text: Some("123 456".into()),
            html: None,
        }),
        sms: None,
        push: None,
        metadata: BTreeMap::new(),
        ..NotificationRequest::default()
    }
}

#[tokio::test]
async fn record_round_trips_in_confluent_framing_with_the_id_the_registry_gave() {
    for registry in registries().await {
        let codec = codec(&registry);
        let topic = topic("requests");
        let bytes = codec.encode(&topic, &request()).await.unwrap();
        assert_eq!(bytes[0], 0, "magic byte");
        let latest = get_json(&registry, &format!("/subjects/{topic}-value/versions/latest")).await;
        let id = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        assert_eq!(Some(u64::from(id)), latest["id"].as_u64(), "{}: {latest}", registry.name);
        let back: NotificationRequest = codec.decode(Some(&bytes)).await.unwrap();
        assert_eq!(back, request(), "{}", registry.name);
    }
}

#[tokio::test]
async fn records_after_the_first_are_framed_and_read_without_the_converter_and_match_its_bytes() {
    for registry in registries().await {
        let codec = codec(&registry);
        let (requests, events) = (topic("requests"), topic("events"));
        let mut full = request();
        full.client_id = Some("svc".into());
        full.channels = vec!["email".into(), "push".into()];
        full.push = Some(herald_schemas::PushContent {
            title: Some("t".into()),
            body: "b".into(),
            data: BTreeMap::from([("k".into(), "v".into())]),
        });
        full.metadata = BTreeMap::from([("trace".into(), "abc".into())]);
        full.send_at = Some(1_800_000_000_000);
        let first = codec.encode(&requests, &full).await.unwrap();
        let second = codec.encode(&requests, &full).await.unwrap();
        assert_eq!(
            first, second,
            "{}: the direct writer writes what the converter did",
            registry.name
        );

        for _ in 0..2 {
            let back: NotificationRequest = codec.decode(Some(&second)).await.unwrap();
            assert_eq!(
                back, full,
                "{}: the first decode resolves, the next reads straight",
                registry.name
            );
        }
        let mut event = herald_schemas::DeliveryEvent::new("n-1", herald_schemas::EventKind::Sent);
        event.detail.insert("provider_id".into(), "abc".into());
        let bytes = codec.encode(&events, &event).await.unwrap();
        assert_ne!(bytes[1..5], first[1..5], "each record type carries its own schema's id");
        for _ in 0..2 {
            let back: herald_schemas::DeliveryEvent = codec.decode(Some(&bytes)).await.unwrap();
            assert_eq!(back, event);
        }
        let mut cut = bytes.clone();
        cut.truncate(cut.len() - 3);
        let error = codec.decode::<herald_schemas::DeliveryEvent>(Some(&cut)).await.unwrap_err();
        assert!(!error.is_retryable(), "a cut record is poison on the direct path too: {error}");
    }
}

/// What every role registers at start-up: Herald's schema of each record under the subject
/// of each topic it writes, as `schemas/avro/` has it.
#[tokio::test]
async fn herald_registers_its_avsc_schemas_under_each_written_topics_value_subject() {
    for registry in registries().await {
        let codec = codec(&registry);
        let prefix = topic("");
        let topics = herald_schemas::Topics::new(prefix.clone());
        let written = topics.written_records();
        assert!(written.len() >= 18, "{written:?}");
        for (topic, record) in &written {
            let id = codec.register_kind(topic, *record).await.unwrap();
            let again = codec.register_kind(topic, *record).await.unwrap();
            assert_eq!(id, again, "{}: registering again finds the same id", registry.name);
            let latest =
                get_json(&registry, &format!("/subjects/{topic}-value/versions/latest")).await;
            assert_eq!(latest["id"].as_u64(), Some(u64::from(id)), "{}: {topic}", registry.name);
            let registered = Schema::parse_str(latest["schema"].as_str().unwrap()).unwrap();
            let file = format!("{}.avsc", snake_case(record.name()));
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro").join(&file);
            let ours = Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap();
            assert_eq!(
                registered.canonical_form(),
                ours.canonical_form(),
                "{}: {topic}-value holds schemas/avro/{file}",
                registry.name
            );
        }
        // A record encoded for a registered topic uses that id, without asking again.
        let (topic, _) = &written[written.len() - 1];
        let id = codec.register_kind(topic, herald_schemas::WireRecord::NotificationRequest);
        let bytes = codec.encode(topic, &request()).await.unwrap();
        assert_eq!(bytes[1..5], id.await.unwrap().to_be_bytes());
    }
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The current NotificationRequest plus one field with a default: what the next schema
/// version of a backward-compatible change looks like.
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

fn schema_with_added_field(field: &str) -> String {
    let mut json: serde_json::Value =
        serde_json::from_str(NotificationRequest::schema_json()).unwrap();
    let field: serde_json::Value = serde_json::from_str(field).unwrap();
    json["fields"].as_array_mut().unwrap().push(field);
    json.to_string()
}

impl Record for RequestWithTenant {
    const NAME: &'static str = "RequestWithTenant";
    fn schema_json() -> &'static str {
        static JSON: OnceLock<String> = OnceLock::new();
        JSON.get_or_init(|| {
            schema_with_added_field(r#"{"name": "tenant", "type": "string", "default": "main"}"#)
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

#[tokio::test]
async fn v1_record_still_decodes_after_a_field_with_default_is_added() {
    for registry in registries().await {
        let codec = codec(&registry);
        let requests = topic("requests");
        let v1_bytes = codec.encode(&requests, &request()).await.unwrap();

        // The evolved schema is accepted by the registry under the same subject (BACKWARD)...
        let v1 = request();
        let v2 = RequestWithTenant {
            notification_id: "n-2".into(),
            accepted_at: v1.accepted_at,
            client_id: None,
            recipient: Recipient::default(),
            channels: vec![],
            category: v1.category,
            from: None,
            email: None,
            sms: None,
            push: None,
            metadata: BTreeMap::new(),
            tenant: "eu".into(),
        };
        // A producer built with the new schema is another process with its own codec (the
        // converter caches one schema per subject and encoder).
        let v2_bytes = self::codec(&registry).encode(&requests, &v2).await.unwrap();
        assert_ne!(v1_bytes[1..5], v2_bytes[1..5], "{}: v2 got its own schema id", registry.name);
        let versions = get_json(&registry, &format!("/subjects/{requests}-value/versions")).await;
        assert_eq!(versions.as_array().map(Vec::len), Some(2), "{}: {versions}", registry.name);

        // ...and a reader built for it decodes the old record, taking the default.
        let old: RequestWithTenant = codec.decode(Some(&v1_bytes)).await.unwrap();
        assert_eq!(old.tenant, "main");
        let again: RequestWithTenant = codec.decode(Some(&v1_bytes)).await.unwrap();
        assert_eq!(again.tenant, "main", "another writer schema keeps being resolved");
        assert_eq!(old.notification_id, request().notification_id);
        assert_eq!(old.email, request().email);

        // The current reader still reads what the newer writer wrote.
        let new: NotificationRequest = codec.decode(Some(&v2_bytes)).await.unwrap();
        assert_eq!(new.notification_id, "n-2", "{}", registry.name);
    }
}

#[test]
fn every_recorded_schema_version_is_readable_by_the_current_one() {
    let history = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro/history");
    let current = |name: &str| -> Schema {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro").join(name);
        Schema::parse_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    };
    let mut checked = 0;
    for entry in std::fs::read_dir(history).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_str().unwrap().to_owned();
        let (name, _version) = file.trim_end_matches(".avsc").rsplit_once('.').unwrap();
        let old = Schema::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        SchemaCompatibility::can_read(&old, &current(&format!("{name}.avsc")))
            .unwrap_or_else(|e| panic!("{file} is not readable by the current {name}.avsc: {e}"));
        checked += 1;
    }
    assert!(checked >= 3, "history holds every record's v1");
}

#[tokio::test]
async fn the_registry_refuses_a_field_added_without_default_and_herald_names_the_subject() {
    for registry in registries().await {
        let codec = codec(&registry);
        let requests = topic("requests");
        codec.encode(&requests, &request()).await.unwrap();
        let breaking = schema_with_added_field(r#"{"name": "tenant", "type": "string"}"#);
        let path = format!("/subjects/{requests}-value/versions");
        let (status, body) = post_schema(&registry, &path, &breaking).await;
        assert_eq!(status, 409, "{}: {body}", registry.name);

        // The other way round: a subject whose latest version Herald's schema cannot read
        // refuses Herald's registration, and the error names the subject and the reason.
        let other = topic("requests");
        let changed = NotificationRequest::schema_json().replace(
            r#""name": "accepted_at", "type": {"type": "long", "logicalType": "timestamp-millis"}"#,
            r#""name": "accepted_at", "type": "string""#,
        );
        assert_ne!(changed, NotificationRequest::schema_json(), "the field's type is changed");
        let (status, body) =
            post_schema(&registry, &format!("/subjects/{other}-value/versions"), &changed).await;
        assert_eq!(status, 200, "{}: {body}", registry.name);
        let refused = codec.register::<NotificationRequest>(&other).await.unwrap_err();
        assert!(!refused.is_retryable(), "{}: {refused}", registry.name);
        let message = refused.to_string();
        assert!(message.contains(&format!("{other}-value")), "{}: {message}", registry.name);
        assert!(message.contains("409"), "{}: the registry's answer: {message}", registry.name);
    }
}

async fn post_schema(registry: &Registry, path: &str, schema: &str) -> (u16, String) {
    herald_schemas::install_tls_provider();
    let body = serde_json::json!({ "schema": schema });
    let response = reqwest::Client::new()
        .post(format!("{}{path}", registry.url))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn garbage_and_unknown_schema_ids_are_poison_not_retryable() {
    for registry in registries().await {
        let codec = codec(&registry);
        let garbage = codec.decode::<NotificationRequest>(Some(b"{\"json\": true}")).await;
        assert!(matches!(garbage, Err(DecodeError::Undecodable(_))), "{garbage:?}");

        // An id no registry of a test run hands out.
        let unknown_id = [0u8, 0x7f, 0xff, 0xff, 0x00, 2, 3];
        let err = codec.decode::<NotificationRequest>(Some(&unknown_id)).await.unwrap_err();
        assert!(!err.is_retryable(), "{}: {err}", registry.name);

        let empty = codec.decode::<NotificationRequest>(None).await.unwrap_err();
        assert!(matches!(empty, DecodeError::Empty));
    }
}

#[tokio::test]
async fn unreachable_registry_is_retryable_not_poison() {
    // A port nothing listens on: bind, read the port, drop the listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let codec = AvroCodec::new(&RegistryConfig::new(format!("http://127.0.0.1:{port}"))).unwrap();
    let framed = [0u8, 0, 0, 0, 1, 2, 3];
    let err = codec.decode::<NotificationRequest>(Some(&framed)).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let err = codec.encode("t.requests", &request()).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}
