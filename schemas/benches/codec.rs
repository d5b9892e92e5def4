//! What one record costs to frame and read: schema_registry_converter for every record (how
//! the codec worked before it cached schema ids) against `AvroCodec` (the converter for the
//! first record of a topic or schema id, the compiled-in schema after). Prints ns per record;
//! the registry is the in-process dev registry, so no network time is counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout, missing_docs)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Instant;

use apache_avro::from_value;
use herald_schemas::{
    AvroCodec, DeliveryEvent, EmailContent, EventKind, NotificationRequest, Recipient, Record,
    RegistryConfig,
};
use herald_testkit::DevRegistry;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

const RECORDS: u32 = 100_000;

fn event() -> DeliveryEvent {
    let mut event = DeliveryEvent::new("0190f0a0-0000-7000-8000-000000000001", EventKind::Routed);
    event.channel = Some("push".into());
    event.target = Some("f".repeat(64));
    event.user_id = Some("user-123456".into());
    event.provider = Some("fcm".into());
    event.detail = BTreeMap::from([("route".into(), "default".into())]);
    event
}

fn request() -> NotificationRequest {
    NotificationRequest {
        notification_id: "0190f0a0-0000-7000-8000-000000000001".into(),
        accepted_at: 1_760_000_000_000,
        client_id: Some("0190f0a0-0000-7000-8000-00000000000c".into()),
        recipient: Recipient { user_id: Some("user-123456".into()), ..Recipient::default() },
        category: "transactional".into(),
        email: Some(EmailContent {
            subject: "Your sign-in code".into(),
            text: Some("Your code is 482913".into()),
            html: None,
        }),
        metadata: BTreeMap::from([("trace".into(), "abc".into())]),
        ..NotificationRequest::default()
    }
}

/// ns per iteration of `work`, run `RECORDS` times.
async fn per_record<F: Future<Output = ()>>(mut work: impl FnMut() -> F) -> f64 {
    let started = Instant::now();
    for _ in 0..RECORDS {
        work().await;
    }
    started.elapsed().as_secs_f64() * 1e9 / f64::from(RECORDS)
}

async fn compare<R: Record + PartialEq + std::fmt::Debug>(url: &str, topic: &str, record: &R) {
    // Built first: it installs the TLS provider the converter's HTTP client needs.
    let codec = AvroCodec::new(&RegistryConfig::new(url)).unwrap();
    let settings = SrSettings::new(url.to_owned());
    let (encoder, decoder) = (AvroEncoder::new(settings.clone()), AvroDecoder::new(settings));
    let strategy = || {
        let schema = SuppliedSchema::new(None, SchemaType::Avro, R::schema_json().to_owned());
        SubjectNameStrategy::TopicNameStrategyWithSchema(topic.to_owned(), false, schema)
    };
    let bytes = encoder.encode_struct(record, &strategy()).await.unwrap();
    let converter_encode = per_record(|| async {
        black_box(encoder.encode_struct(record, &strategy()).await.unwrap());
    })
    .await;
    let converter_decode = per_record(|| async {
        let decoded = decoder.decode(Some(&bytes)).await.unwrap();
        let value = decoded.value.resolve(R::schema()).unwrap();
        black_box(from_value::<R>(&value).unwrap());
    })
    .await;

    let framed = codec.encode(topic, record).await.unwrap();
    assert_eq!(framed, bytes, "both write the same bytes");
    let codec_encode = per_record(|| async {
        black_box(codec.encode(topic, record).await.unwrap());
    })
    .await;
    let codec_decode = per_record(|| async {
        black_box(codec.decode::<R>(Some(&framed)).await.unwrap());
    })
    .await;
    println!(
        "{:<20} {:>6} {:>17.0} {:>17.0} {:>13.0} {:>13.0}",
        R::NAME,
        bytes.len(),
        converter_encode,
        converter_decode,
        codec_encode,
        codec_decode
    );
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let addr = DevRegistry::default().spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{addr}");
    println!("ns per record, {RECORDS} records each");
    println!(
        "{:<20} {:>6} {:>17} {:>17} {:>13} {:>13}",
        "record", "bytes", "converter encode", "converter decode", "codec encode", "codec decode"
    );
    compare(&url, "bench.requests", &request()).await;
    compare(&url, "bench.events", &event()).await;
}
