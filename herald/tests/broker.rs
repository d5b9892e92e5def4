//! What Herald needs from the broker it runs against in `herald dev` and the tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use herald_runtime::kafka::admin::{TopicSpec, create_topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// A consumer group resumes from its committed offset, which is usually inside a batch the
/// producer wrote. Tansu's in-memory engine fails this (watermark 1, empty fetches); the
/// SQLite engine `TansuBroker` uses passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_serves_fetches_that_start_inside_a_record_batch() {
    let env = support::TestEnv::start().await;
    let topic = format!("{}batched", env.config.kafka.topic_prefix);
    let spec = TopicSpec { name: topic.clone(), partitions: 1, replication: 1, config: vec![] };
    create_topics(&env.config.kafka, &[spec]).await.unwrap();
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", env.broker.bootstrap_servers())
        .set("linger.ms", "50")
        .create()
        .unwrap();
    let sends = (0..100).map(|i| {
        let (producer, topic) = (producer.clone(), topic.clone());
        async move {
            let value = i.to_string();
            let record = FutureRecord::<str, str>::to(&topic).key("k").payload(&value);
            producer.send(record, Duration::from_secs(5)).await.unwrap().offset
        }
    });
    let offsets = futures::future::join_all(sends).await;
    assert_eq!(offsets, (0..100).collect::<Vec<i64>>());

    let consumer = |group: &str| -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", env.broker.bootstrap_servers())
            .set("group.id", group)
            .create()
            .unwrap()
    };
    assert_eq!(
        consumer("w").fetch_watermarks(&topic, 0, Duration::from_secs(5)).unwrap(),
        (0, 100)
    );
    for start in [0, 37, 99] {
        let reader = consumer(&format!("from-{start}"));
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&topic, 0, Offset::Offset(start)).unwrap();
        reader.assign(&tpl).unwrap();
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while got.len() < usize::try_from(100 - start).unwrap()
            && std::time::Instant::now() < deadline
        {
            if let Some(Ok(m)) = reader.poll(Duration::from_millis(100)) {
                got.push(m.offset());
            }
        }
        assert_eq!(got, (start..100).collect::<Vec<_>>(), "fetch from {start}");
    }
}
