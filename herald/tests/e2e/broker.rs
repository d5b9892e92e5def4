//! What Herald needs from the broker it runs against: Apache Kafka, and Tansu in `herald dev`.

use crate::support;

use std::time::Duration;

use herald_runtime::kafka::admin::{TopicSpec, create_topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// Topic `name` (under the test's prefix) with one partition, and a plain producer with
/// `linger_ms`.
async fn one_partition_topic(
    env: &support::TestEnv,
    name: &str,
    linger_ms: &str,
) -> (String, FutureProducer) {
    let topic = format!("{}{name}", env.config.kafka.topic_prefix);
    let spec = TopicSpec { name: topic.clone(), partitions: 1, replication: 1, config: vec![] };
    create_topics(&env.config.kafka, &[spec]).await.unwrap();
    let producer = ClientConfig::new()
        .set("bootstrap.servers", env.broker.bootstrap_servers())
        .set("linger.ms", linger_ms)
        .create()
        .unwrap();
    (topic, producer)
}

/// A consumer group resumes from its committed offset, which is usually inside a batch the
/// producer wrote. Tansu's in-memory engine fails this (watermark 1, empty fetches); the
/// SQLite engine `TansuBroker` uses passes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_serves_fetches_that_start_inside_a_record_batch() {
    let env = support::TestEnv::start().await;
    let (topic, producer) = one_partition_topic(&env, "batched", "50").await;
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

/// Kafka answers a time lookup later than every record with "none" (the group then moves to
/// the log end); Tansu 0.6 answers offset 0, which would move a group back to the start of
/// its log. `group_offsets::reset_to_time` checks an answer at the log start against the
/// last record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_reset_to_a_time_after_the_last_record_moves_to_the_log_end_not_the_start() {
    use herald_runtime::kafka::ChangeMode;
    use herald_runtime::kafka::group_offsets::{lag, reset_to_time};
    let env = support::TestEnv::start().await;
    let (topic, producer) = one_partition_topic(&env, "stamped", "5").await;
    for i in 0..5 {
        let value = i.to_string();
        let record = FutureRecord::<str, str>::to(&topic).key("k").payload(&value);
        producer.send(record, Duration::from_secs(5)).await.unwrap();
    }
    let after_the_last = herald_schemas::now_millis() + 1_000;
    let (kafka, topics) = (env.config.kafka.clone(), vec![topic.clone()]);
    let group = env.group("late-reader");
    let (resets, positions) = tokio::task::spawn_blocking(move || {
        let resets =
            reset_to_time(&kafka, &group, &topics, after_the_last, ChangeMode::Apply).unwrap();
        (resets, lag(&kafka, &group, &topics).unwrap())
    })
    .await
    .unwrap();
    assert_eq!(resets.len(), 1);
    assert_eq!(resets[0].to, 5, "to the log end: {resets:?}");
    assert_eq!(positions[0].committed, Some(5), "{positions:?}");
}
