//! Members joining and leaving a group while records stream in.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use herald_runtime::kafka::Producer;

use super::{Fixture, eventually, recorder};

/// Members join and leave while records stream in. Under the consumer protocol (Kafka 4)
/// a rebalance revokes only some of a member's partitions: the records it had taken of
/// them go to their next owner, and none of the partitions it keeps is skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_joining_and_leaving_mid_stream_leave_no_record_unhandled() {
    let f = Fixture::new(4).await;
    let mut kafka = f.kafka();
    if f.broker.is_kafka() {
        kafka.consumer.group_protocol = herald_runtime::GroupProtocol::Consumer;
    }
    let (seen, behaviour) = recorder();
    const N: usize = 3_000;
    let producing = {
        let producer = Producer::new(&f.kafka, "test-producer").unwrap();
        let topic = f.topic.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let (key, value) = (format!("k{i}"), i.to_string());
                producer.send(&topic, Some(key.as_bytes()), value.as_bytes(), None).await.unwrap();
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        })
    };
    let (stop_a, task_a) = f.start(kafka.clone(), "g-churn", Arc::clone(&behaviour));
    eventually("a started", || !seen.lock().unwrap().is_empty()).await;
    let (stop_b, task_b) = f.start(kafka.clone(), "g-churn", Arc::clone(&behaviour));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (stop_c, task_c) = f.start(kafka.clone(), "g-churn", Arc::clone(&behaviour));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop_b.cancel();
    task_b.await.unwrap();
    producing.await.unwrap();
    eventually("every record handled", || {
        seen.lock().unwrap().iter().collect::<BTreeSet<_>>().len() == N
    })
    .await;
    for (stop, task) in [(stop_a, task_a), (stop_c, task_c)] {
        stop.cancel();
        task.await.unwrap();
    }
}
