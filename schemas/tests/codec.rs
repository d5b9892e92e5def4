//! The Confluent wire format through the development registry: what producers and consumers
//! of `herald.requests` rely on.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use apache_avro::Schema;
use apache_avro::schema_compatibility::SchemaCompatibility;
use herald_schemas::codec::Datum;
use herald_schemas::dev_registry::DevRegistry;
use herald_schemas::{
    AvroCodec, DecodeError, EmailContent, NotificationRequest, Recipient, Record, RegistryConfig,
};
use serde::{Deserialize, Serialize};

async fn registry() -> (SocketAddr, AvroCodec) {
    let addr = DevRegistry::default().spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let codec = AvroCodec::new(&RegistryConfig::new(format!("http://{addr}"))).unwrap();
    (addr, codec)
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
async fn record_round_trips_in_confluent_framing() {
    let (_, codec) = registry().await;
    let bytes = codec.encode("t.requests", &request()).await.unwrap();
    assert_eq!(bytes[0], 0, "magic byte");
    assert_eq!(u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]), 1, "schema id");
    let back: NotificationRequest = codec.decode(Some(&bytes)).await.unwrap();
    assert_eq!(back, request());
}

#[tokio::test]
async fn records_after_the_first_are_framed_and_read_without_the_converter_and_match_its_bytes() {
    let (_, codec) = registry().await;
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
    let first = codec.encode("t.requests", &full).await.unwrap();
    let second = codec.encode("t.requests", &full).await.unwrap();
    assert_eq!(first, second, "the direct writer frames and writes what the converter did");

    for _ in 0..2 {
        let back: NotificationRequest = codec.decode(Some(&second)).await.unwrap();
        assert_eq!(back, full, "the first decode resolves, the next reads straight");
    }
    let mut event = herald_schemas::DeliveryEvent::new("n-1", herald_schemas::EventKind::Sent);
    event.detail.insert("provider_id".into(), "abc".into());
    let bytes = codec.encode("t.events", &event).await.unwrap();
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
    let (addr, codec) = registry().await;
    let v1_bytes = codec.encode("t.requests", &request()).await.unwrap();

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
    let v2_producer = AvroCodec::new(&RegistryConfig::new(format!("http://{addr}"))).unwrap();
    let v2_bytes = v2_producer.encode("t.requests", &v2).await.unwrap();
    assert_ne!(v1_bytes[1..5], v2_bytes[1..5], "v2 got its own schema id");

    // ...and a reader built for it decodes the old record, taking the default.
    let old: RequestWithTenant = codec.decode(Some(&v1_bytes)).await.unwrap();
    assert_eq!(old.tenant, "main");
    let again: RequestWithTenant = codec.decode(Some(&v1_bytes)).await.unwrap();
    assert_eq!(again.tenant, "main", "another writer schema keeps being resolved");
    assert_eq!(old.notification_id, request().notification_id);
    assert_eq!(old.email, request().email);

    // The current reader still reads what the newer writer wrote.
    let new: NotificationRequest = codec.decode(Some(&v2_bytes)).await.unwrap();
    assert_eq!(new.notification_id, "n-2");
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
async fn registry_rejects_a_field_added_without_default() {
    let (addr, codec) = registry().await;
    codec.encode("t.requests", &request()).await.unwrap();
    let breaking = schema_with_added_field(r#"{"name": "tenant", "type": "string"}"#);
    let response = reqwest_post(addr, "/subjects/t.requests-value/versions", &breaking).await;
    assert_eq!(response.0, 409, "{}", response.1);
}

async fn reqwest_post(addr: SocketAddr, path: &str, schema: &str) -> (u16, String) {
    herald_schemas::install_tls_provider();
    let body = serde_json::json!({ "schema": schema });
    let response = reqwest::Client::new()
        .post(format!("http://{addr}{path}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn garbage_and_unknown_schema_ids_are_poison_not_retryable() {
    let (_, codec) = registry().await;
    let garbage = codec.decode::<NotificationRequest>(Some(b"{\"json\": true}")).await;
    assert!(matches!(garbage, Err(DecodeError::Undecodable(_))), "{garbage:?}");

    let unknown_id = [0u8, 0, 0, 0, 99, 2, 3];
    let err = codec.decode::<NotificationRequest>(Some(&unknown_id)).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");

    let empty = codec.decode::<NotificationRequest>(None).await.unwrap_err();
    assert!(matches!(empty, DecodeError::Empty));
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
