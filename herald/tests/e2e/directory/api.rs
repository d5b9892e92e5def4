//! What the directory refuses gets a reason per field and writes nothing: a bad call at the
//! API (4xx), a bad record on its topic (the dead-letter topic, the partition moving on).
//! And the API attacked from its OpenAPI document.

use std::path::Path;
use std::time::Duration;

use herald_runtime::kafka::{Message as _, Producer, header_str};
use herald_schemas::{AvroCodec, DirectoryChange, DirectoryOp, UserFields, headers};
use herald_testkit::schemathesis::{Attack, attack};
use reqwest::Method;
use serde_json::{Value, json};

use super::call;
use crate::support::TestEnv;

fn fields(answer: &Value) -> Vec<&str> {
    answer["errors"]
        .as_array()
        .map_or_else(Vec::new, |errors| errors.iter().filter_map(|e| e["field"].as_str()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_directory_call_names_each_field_and_writes_nothing() {
    let env = TestEnv::start().await;
    let key = env.directory_key().await;
    let send_only = env.api_key().await;
    let stores = herald_ingest::IngestStores::open(&env.config.ingest).await.unwrap();
    let read_only = herald_ingest::ClientPolicy {
        directory: Some(herald_ingest::DirectoryAccess::Read),
        ..herald_ingest::ClientPolicy::default()
    };
    let read_only = stores.clients.add_with("reader", read_only).await.unwrap().1;
    let api = env.pipeline().await;
    let put = |path: &str, body: Value| {
        let (api, key, path) = (&api, &key, path.to_owned());
        async move { call(api, key, (Method::PUT, &path), Some(body)).await }
    };

    let invalid = json!({"email": "not an address", "phone": "+15551234567", "timezone": "Mars/Base", "quiet_hours": "22-07"});
    let (status, answer) = put("/v1/users/refused", invalid).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(fields(&answer), ["email", "phone", "timezone", "quiet_hours"], "{answer}");
    let (status, answer) = put("/v1/users/refused", json!({"nickname": "x"})).await;
    assert_eq!((status, answer["error"].as_str()), (400, Some("invalid_json")), "{answer}");
    let (status, answer) =
        put("/v1/users/nobody/devices/phone", json!({"platform": "ios", "token": "ab".repeat(32)}))
            .await;
    assert_eq!(status, 404, "a device needs its user: {answer}");
    let long_id = format!("/v1/users/{}", "u".repeat(200));
    let (status, answer) = put(&long_id, json!({})).await;
    assert_eq!((status, fields(&answer)), (422, vec!["user_id"]), "{answer}");

    let (status, _) = put("/v1/users/kept", json!({"email": "kept@example.com"})).await;
    assert_eq!(status, 201);
    let (status, answer) =
        put("/v1/users/kept/devices/phone", json!({"platform": "web", "token": "t0k3n-abc"})).await;
    assert_eq!((status, fields(&answer)), (422, vec!["platform"]), "{answer}");
    let (status, answer) =
        put("/v1/users/kept/devices/phone", json!({"platform": "ios", "token": "not-hex"})).await;
    assert_eq!((status, fields(&answer)), (422, vec!["token"]), "{answer}");
    let (status, answer) =
        put("/v1/users/kept/devices/phone", json!({"platform": "android", "token": "x y"})).await;
    assert_eq!((status, fields(&answer)), (422, vec!["token"]), "{answer}");
    let choice =
        json!({"preferences": [{"category": "marketing", "channel": "fax", "opted_in": false}]});
    let (status, answer) = put("/v1/users/kept/preferences", choice).await;
    assert_eq!((status, fields(&answer)), (422, vec!["preferences[0].channel"]), "{answer}");
    let (status, answer) =
        call(&api, &key, (Method::PATCH, "/v1/users/kept"), Some(json!({"phone": "555"}))).await;
    assert_eq!((status, fields(&answer)), (422, vec!["phone"]), "{answer}");
    let (status, answer) =
        call(&api, &key, (Method::PATCH, "/v1/users/nobody"), Some(json!({"region": "US"}))).await;
    assert_eq!(status, 404, "{answer}");
    let broken = json!({"variants": [{"channel": "sms", "body": "{{ code"}]});
    let (status, answer) = put("/v1/templates/broken", broken).await;
    assert_eq!((status, fields(&answer)), (422, vec!["variants[0].body"]), "{answer}");
    let huge = json!({"variants": [{"channel": "sms", "body": "x".repeat(300 * 1024)}]});
    let (status, _) = put("/v1/templates/huge", huge).await;
    assert_eq!(status, 413);

    // Keys: a read-only key reads and changes nothing; a key made to send has no access.
    assert_eq!(call(&api, &read_only, (Method::GET, "/v1/users/kept"), None).await.0, 200);
    let (status, answer) = call(&api, &read_only, (Method::DELETE, "/v1/users/kept"), None).await;
    assert_eq!((status, answer["error"].as_str()), (403, Some("forbidden")), "{answer}");
    assert_eq!(call(&api, &send_only, (Method::GET, "/v1/users/kept"), None).await.0, 403);
    let (status, _) = api.get("hrld_0000", "/v1/users/kept").await;
    assert_eq!(status, 401);

    // Of all these, only the one accepted call reached the topic.
    let written =
        env.read_topic(&env.topics().directory_changes(), Duration::from_secs(3), |_| false).await;
    let keys: Vec<&[u8]> = written.iter().filter_map(|m| m.key()).collect();
    assert_eq!(keys, [b"kept".as_slice()], "only the accepted write");
    api.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_record_on_the_directory_topic_is_dead_lettered_with_its_reason_and_the_partition_moves_on()
 {
    let env = TestEnv::start().await;
    let key = env.directory_key().await;
    let api = env.pipeline().await;
    let codec = AvroCodec::new(&env.config.schema_registry.resolve().unwrap()).unwrap();
    let topic = env.topics().directory_changes();
    let producer = Producer::new(&env.config.kafka, "a-service").unwrap();
    // All in one partition, so the last one applied shows the bad ones did not stop it.
    let send = |key: &'static str, payload: Vec<u8>| {
        let (producer, topic) = (&producer, &topic);
        async move {
            let record =
                rdkafka::producer::FutureRecord::to(topic).partition(0).key(key).payload(&payload);
            producer.client().send(record, Duration::from_secs(10)).await.unwrap();
        }
    };
    send("garbage", b"not avro at all".to_vec()).await;
    let mut bad_phone = DirectoryChange::new("bad-phone", DirectoryOp::PutUser);
    bad_phone.user = Some(UserFields { phone: Some("12345".into()), ..UserFields::default() });
    send("bad-phone", codec.encode(&topic, &bad_phone).await.unwrap()).await;
    let mut misaddressed = DirectoryChange::new("someone-else", DirectoryOp::PutUser);
    misaddressed.user = Some(UserFields::default());
    send("misaddressed", codec.encode(&topic, &misaddressed).await.unwrap()).await;
    let mut good = DirectoryChange::new("good", DirectoryOp::PutUser);
    good.user =
        Some(UserFields { email: Some("good@example.com".into()), ..UserFields::default() });
    send("good", codec.encode(&topic, &good).await.unwrap()).await;

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while call(&api, &key, (Method::GET, "/v1/users/good"), None).await.0 != 200 {
        assert!(std::time::Instant::now() < deadline, "the good change was never applied");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for absent in ["bad-phone", "someone-else", "misaddressed"] {
        assert_eq!(
            call(&api, &key, (Method::GET, &format!("/v1/users/{absent}")), None).await.0,
            404
        );
    }
    let dead = env.read_topic(&env.topics().dlq(), Duration::from_secs(30), |d| d.len() >= 3).await;
    // By key: records of different users are applied (and dead-lettered) concurrently.
    let reasons: std::collections::BTreeMap<String, String> = dead
        .iter()
        .map(|m| {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            assert_eq!(header_str(m, headers::ORIGINAL_TOPIC), Some(topic.as_str()));
            (key, header_str(m, headers::ERROR_REASON).unwrap_or_default().to_owned())
        })
        .collect();
    assert_eq!(dead.len(), 3, "{reasons:?}");
    assert!(reasons.get("garbage").is_some_and(|r| !r.is_empty()), "{reasons:?}");
    assert!(reasons.get("bad-phone").is_some_and(|r| r.contains("user.phone")), "{reasons:?}");
    assert!(reasons.get("misaddressed").is_some_and(|r| r.contains("keyed")), "{reasons:?}");
    api.stop().await;
}

/// Examples per operation and phase.
const EXAMPLES: &str = "25";

/// The directory API attacked from its OpenAPI document (see [`herald_testkit::schemathesis`]).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_generated_directory_call_gets_an_answer_the_openapi_document_allows_with_a_reason() {
    let Some(python) = herald_testkit::required("HERALD_TEST_PYTHON", "Python with schemathesis")
    else {
        return;
    };
    let mut env = TestEnv::start().await;
    // A write the enricher is slow to apply is answered 202, which the document allows; a
    // shorter wait keeps the run short whatever the broker.
    env.config.enricher.directory_api_wait_ms = 2_000;
    let key = env.directory_key().await;
    let api = env.pipeline().await;
    let config =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/directory/schemathesis.toml");
    let run = Attack {
        document: format!("{}/openapi.json", api.api),
        key: &key,
        config: &config,
        examples: EXAMPLES,
        extra: &["--include-tag", "directory"],
    };
    let summary = tokio::task::block_in_place(|| attack(&python, &run, env.dir.path(), 300));
    api.stop().await;
    eprintln!("schemathesis: {summary}");
}
