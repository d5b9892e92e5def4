//! The consumer runtime every role runs on, against a real broker: offsets are stored only
//! for finished work, in order; shutdown and rebalances drain; in-flight work is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use herald_runtime::KafkaConfig;
use herald_runtime::kafka::admin::{TopicSpec, create_topics};
use herald_runtime::kafka::consumer::{self, ConsumerSpec, Handler, HandlerError};
use herald_runtime::kafka::{Message, OwnedMessage, Producer};
use herald_testkit::Broker;
use tokio_util::sync::CancellationToken;

#[path = "consumer/members.rs"]
mod members;
#[path = "consumer/stall.rs"]
mod stall;
#[path = "consumer/told.rs"]
mod told;

type Behaviour = dyn Fn(OwnedMessage) -> BoxFuture<'static, Result<(), HandlerError>> + Send + Sync;

struct TestHandler(Arc<Behaviour>);

impl Handler for TestHandler {
    fn handle(
        &self,
        message: &OwnedMessage,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send {
        (self.0)(message.clone())
    }
}

fn payload(m: &OwnedMessage) -> String {
    String::from_utf8(m.payload().unwrap().to_vec()).unwrap()
}

/// A topic of the test's own on the run's broker (Apache Kafka in CI, or Tansu).
struct Fixture {
    kafka: KafkaConfig,
    topic: String,
    broker: Broker,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn new(partitions: i32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            Broker::for_test(dir.path()).await.expect("Tansu starts (infra/install-tansu.sh)");
        Self::on(broker, dir, partitions).await
    }

    /// A topic on a Tansu broker of the test's own, whatever the run's broker.
    async fn on_own_tansu(partitions: i32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let broker =
            Broker::tansu(dir.path()).await.expect("Tansu starts (infra/install-tansu.sh)");
        Self::on(broker, dir, partitions).await
    }

    async fn on(broker: Broker, dir: tempfile::TempDir, partitions: i32) -> Self {
        let mut kafka = broker.kafka_config();
        herald_testkit::isolate(&mut kafka);
        kafka.consumer.drain_deadline_ms = 3_000;
        let topic = format!("{}work", kafka.topic_prefix);
        let spec = TopicSpec { name: topic.clone(), partitions, replication: 1, config: vec![] };
        create_topics(&kafka, &[spec]).await.unwrap();
        Self { kafka, topic, broker, _dir: dir }
    }

    fn kafka(&self) -> KafkaConfig {
        self.kafka.clone()
    }

    async fn produce(&self, records: &[(&str, &str)]) {
        let producer = Producer::new(&self.kafka, "test-producer").unwrap();
        for (key, value) in records {
            producer.send(&self.topic, Some(key.as_bytes()), value.as_bytes(), None).await.unwrap();
        }
    }

    /// Records "0".."n" with keys "k0".."kn": every record its own key.
    async fn produce_numbered(&self, n: usize) {
        let batch: Vec<(String, String)> =
            (0..n).map(|i| (format!("k{i}"), i.to_string())).collect();
        let refs: Vec<(&str, &str)> = batch.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.produce(&refs).await;
    }

    fn start(
        &self,
        kafka: KafkaConfig,
        group: &str,
        behaviour: Arc<Behaviour>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        self.start_handler(kafka, group, Arc::new(TestHandler(behaviour)))
    }

    fn start_handler<H: Handler>(
        &self,
        kafka: KafkaConfig,
        group: &str,
        handler: Arc<H>,
    ) -> (CancellationToken, tokio::task::JoinHandle<()>) {
        let token = CancellationToken::new();
        let spec = ConsumerSpec {
            group_id: group.into(),
            topics: vec![self.topic.clone()],
            client_id: group.into(),
        };
        let shutdown = token.clone();
        let task =
            tokio::spawn(
                async move { consumer::run(&kafka, spec, handler, shutdown).await.unwrap() },
            );
        (token, task)
    }
}

/// The consumer's own in-flight gauge, as exported on /metrics.
fn in_flight_gauge(group: &str) -> usize {
    let needle = format!("herald_consumer_in_flight{{group=\"{group}\"}} ");
    let text = herald_runtime::metrics::render();
    let line = text
        .lines()
        .find(|l| l.starts_with(&needle))
        .unwrap_or_else(|| panic!("no gauge in {text}"));
    line[needle.len()..].trim().parse().unwrap()
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..300 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Records every payload handled, in handling order.
fn recorder() -> (Arc<Mutex<Vec<String>>>, Arc<Behaviour>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let behaviour: Arc<Behaviour> = Arc::new(move |m: OwnedMessage| {
        log.lock().unwrap().push(payload(&m));
        Box::pin(async { Ok(()) })
    });
    (seen, behaviour)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_committed_only_up_to_the_first_unfinished_record() {
    let f = Fixture::new(1).await;
    f.produce(&[("a", "0"), ("b", "1"), ("c", "2"), ("d", "3"), ("e", "4")]).await;

    let finished = Arc::new(Mutex::new(BTreeSet::new()));
    let log = Arc::clone(&finished);
    let stuck_on_2: Arc<Behaviour> = Arc::new(move |m: OwnedMessage| {
        let log = Arc::clone(&log);
        Box::pin(async move {
            let value = payload(&m);
            if value == "2" {
                std::future::pending::<()>().await;
            }
            log.lock().unwrap().insert(value);
            Ok(())
        })
    });
    let mut kafka = f.kafka();
    kafka.consumer.drain_deadline_ms = 500;
    let (stop, task) = f.start(kafka, "g-prefix", stuck_on_2);
    eventually("0 and 1 finished", || {
        finished.lock().unwrap().is_superset(&["0".into(), "1".into()].into())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    task.await.unwrap();

    let (seen, behaviour) = recorder();
    let (stop, task) = f.start(f.kafka(), "g-prefix", behaviour);
    eventually("the rest is redelivered", || seen.lock().unwrap().len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    task.await.unwrap();
    let mut redelivered = seen.lock().unwrap().clone();
    redelivered.sort();
    assert_eq!(
        redelivered,
        ["2", "3", "4"],
        "resumes at the unfinished record, not before, not after"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_records_being_handled_finish_and_commits_them() {
    let f = Fixture::new(1).await;
    f.produce_numbered(8).await;

    let started = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(Mutex::new(BTreeSet::new()));
    let (s, d) = (Arc::clone(&started), Arc::clone(&finished));
    let slow: Arc<Behaviour> = Arc::new(move |m: OwnedMessage| {
        let (s, d) = (Arc::clone(&s), Arc::clone(&d));
        Box::pin(async move {
            s.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(700)).await;
            d.lock().unwrap().insert(m.offset());
            Ok(())
        })
    });
    let (stop, task) = f.start(f.kafka(), "g-drain", slow);
    eventually("records are being handled", || started.load(Ordering::SeqCst) >= 2).await;
    stop.cancel();
    task.await.unwrap();
    let finished = finished.lock().unwrap().clone();
    assert_eq!(
        finished.len(),
        started.load(Ordering::SeqCst),
        "every started record finished before the consumer stopped"
    );

    f.produce(&[("z", "after")]).await;
    let (seen, behaviour) = recorder();
    let (stop, task) = f.start(f.kafka(), "g-drain", behaviour);
    eventually("the new record arrives", || seen.lock().unwrap().contains(&"after".to_owned()))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap();
    // Committed: everything before the first record that did not finish.
    let first_unfinished = (0..8).find(|o| !finished.contains(o)).unwrap_or(8);
    let mut expected: Vec<String> = (first_unfinished..8).map(|o| o.to_string()).collect();
    expected.push("after".into());
    let mut got = seen.lock().unwrap().clone();
    got.sort();
    expected.sort();
    assert_eq!(got, expected, "nothing lost, and the finished prefix is not redelivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_one_key_keep_their_order_while_keys_run_concurrently() {
    let f = Fixture::new(1).await;
    let batch: Vec<(String, String)> =
        (0..30).map(|i| (format!("user-{}", i % 3), format!("user-{}:{i}", i % 3))).collect();
    let refs: Vec<(&str, &str)> = batch.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    f.produce(&refs).await;

    let order = Arc::new(Mutex::new(BTreeMap::<String, Vec<u32>>::new()));
    let running = Arc::new(AtomicUsize::new(0));
    let max_running = Arc::new(AtomicUsize::new(0));
    let (o, r, mr) = (Arc::clone(&order), Arc::clone(&running), Arc::clone(&max_running));
    let jittery: Arc<Behaviour> = Arc::new(move |m: OwnedMessage| {
        let (o, r, mr) = (Arc::clone(&o), Arc::clone(&r), Arc::clone(&mr));
        Box::pin(async move {
            let now = r.fetch_add(1, Ordering::SeqCst) + 1;
            mr.fetch_max(now, Ordering::SeqCst);
            let value = payload(&m);
            let (key, seq) = value.split_once(':').unwrap();
            let seq: u32 = seq.parse().unwrap();
            tokio::time::sleep(Duration::from_millis(u64::from((seq * 7) % 23))).await;
            o.lock().unwrap().entry(key.to_owned()).or_default().push(seq);
            r.fetch_sub(1, Ordering::SeqCst);
            Ok(())
        })
    });
    let (stop, task) = f.start(f.kafka(), "g-order", jittery);
    eventually("all handled", || order.lock().unwrap().values().map(Vec::len).sum::<usize>() == 30)
        .await;
    stop.cancel();
    task.await.unwrap();
    for (key, seqs) in order.lock().unwrap().iter() {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(seqs, &sorted, "{key} handled out of order");
    }
    assert!(max_running.load(Ordering::SeqCst) >= 2, "different keys were handled concurrently");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_and_later_records_wait_for_it() {
    let f = Fixture::new(1).await;
    f.produce(&[("same", "first"), ("same", "second")]).await;
    let attempts = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (a, s) = (Arc::clone(&attempts), Arc::clone(&seen));
    let flaky: Arc<Behaviour> = Arc::new(move |m: OwnedMessage| {
        let (a, s) = (Arc::clone(&a), Arc::clone(&s));
        Box::pin(async move {
            let value = payload(&m);
            if value == "first" && a.fetch_add(1, Ordering::SeqCst) < 3 {
                return Err(HandlerError::new("broker did not acknowledge"));
            }
            s.lock().unwrap().push(value);
            Ok(())
        })
    });
    let (stop, task) = f.start(f.kafka(), "g-retry", flaky);
    eventually("both handled", || seen.lock().unwrap().len() == 2).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(attempts.load(Ordering::SeqCst), 4, "three failures, then success");
    assert_eq!(*seen.lock().unwrap(), ["first", "second"], "the second waited behind the first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetching_pauses_while_in_flight_records_are_at_the_limit() {
    let f = Fixture::new(1).await;
    f.produce_numbered(60).await;

    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Arc::new(AtomicUsize::new(0));
    let (g, s) = (Arc::clone(&gate), Arc::clone(&started));
    let blocked: Arc<Behaviour> = Arc::new(move |_m: OwnedMessage| {
        let (g, s) = (Arc::clone(&g), Arc::clone(&s));
        Box::pin(async move {
            s.fetch_add(1, Ordering::SeqCst);
            g.acquire().await.unwrap().forget();
            Ok(())
        })
    });
    let mut kafka = f.kafka();
    kafka.consumer.max_in_flight = 5;
    kafka.consumer.key_queues_per_partition = 64;
    let (stop, task) = f.start(kafka, "g-bound", blocked);
    eventually("records are in flight", || started.load(Ordering::SeqCst) >= 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let in_flight = in_flight_gauge("g-bound");
    assert!(
        (5..=8).contains(&in_flight),
        "fetching paused at the limit of 5: {in_flight} of 60 in flight"
    );

    gate.add_permits(1_000);
    eventually("all 60 handled after release", || started.load(Ordering::SeqCst) == 60).await;
    stop.cancel();
    task.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_member_takes_over_partitions_without_losing_records() {
    let f = Fixture::new(2).await;
    f.produce_numbered(60).await;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let slow = |who: &'static str| -> Arc<Behaviour> {
        let log = Arc::clone(&seen);
        Arc::new(move |m: OwnedMessage| {
            let log = Arc::clone(&log);
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(250)).await;
                log.lock().unwrap().push((who, payload(&m)));
                Ok(())
            })
        })
    };
    let mut kafka = f.kafka();
    kafka.consumer.key_queues_per_partition = 1;
    let (stop_a, task_a) = f.start(kafka.clone(), "g-rebalance", slow("a"));
    eventually("a started working", || seen.lock().unwrap().len() >= 3).await;
    let (stop_b, task_b) = f.start(kafka, "g-rebalance", slow("b"));
    eventually("every record handled", || {
        seen.lock().unwrap().iter().map(|(_, v)| v.clone()).collect::<BTreeSet<_>>().len() == 60
    })
    .await;
    stop_a.cancel();
    stop_b.cancel();
    task_a.await.unwrap();
    task_b.await.unwrap();
    let seen = seen.lock().unwrap();
    let by_b = seen.iter().filter(|(who, _)| *who == "b").count();
    assert!(by_b > 0, "the second member got a share");
    let mut values: Vec<&String> = seen.iter().map(|(_, v)| v).collect();
    values.sort();
    let before = values.len();
    values.dedup();
    assert_eq!(values.len(), 60, "nothing lost");
    assert_eq!(
        before, 60,
        "finished records were committed before the hand-over, so none ran twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_wait_until_due_while_other_partitions_keep_flowing() {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let f = Fixture::new(2).await;
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &f.kafka.bootstrap_servers)
        .create()
        .unwrap();
    let now = herald_schemas::now_millis();
    let due_in_3s = (now + 3_000).to_string();
    let due_in_1s = (now + 1_000).to_string();
    let send = |partition: i32, value: &'static str, due: Option<String>| {
        let producer = producer.clone();
        let topic = f.topic.clone();
        async move {
            let mut record =
                FutureRecord::<str, str>::to(&topic).partition(partition).key(value).payload(value);
            if let Some(due) = &due {
                record = record.headers(OwnedHeaders::new().insert(Header {
                    key: herald_schemas::headers::DUE_AT,
                    value: Some(due.as_str()),
                }));
            }
            producer.send(record, Duration::from_secs(5)).await.unwrap();
        }
    };
    send(0, "late-head", Some(due_in_3s)).await;
    send(0, "behind-head", Some(due_in_1s)).await;
    send(1, "fresh-1", None).await;
    send(1, "fresh-2", None).await;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    let timed: Arc<Behaviour> = Arc::new(move |m: OwnedMessage| {
        log.lock().unwrap().push((payload(&m), herald_schemas::now_millis()));
        Box::pin(async { Ok(()) })
    });
    let (stop, task) = f.start(f.kafka(), "g-due", timed);
    eventually("all four handled", || seen.lock().unwrap().len() == 4).await;
    stop.cancel();
    task.await.unwrap();

    let seen = seen.lock().unwrap().clone();
    let at = |name: &str| seen.iter().find(|(v, _)| v == name).map(|(_, t)| *t).unwrap();
    assert!(
        at("fresh-1") < now + 3_000 && at("fresh-2") < now + 3_000,
        "the other partition did not wait: {seen:?}"
    );
    assert!(at("late-head") >= now + 3_000, "not handled before due: {seen:?}");
    // Held behind its partition's head until the head was due, though itself due sooner
    // (two keys: once released, the two are handled concurrently, in either order).
    assert!(at("behind-head") >= now + 3_000, "held behind the head: {seen:?}");
    let position = |name: &str| seen.iter().position(|(v, _)| v == name).unwrap();
    assert!(position("fresh-2") < position("late-head"));
}

/// Starts records as they come and lets the test decide when each one's outputs are
/// acknowledged: the wait of `stuck` never ends, the first wait of each of `fail_once` fails.
struct Pipelined {
    started: Mutex<Vec<String>>,
    handled_again: Mutex<Vec<String>>,
    acknowledgements: Arc<tokio::sync::Semaphore>,
    fail_once: Mutex<BTreeSet<String>>,
    stuck: Option<String>,
}

impl Pipelined {
    fn new(fail_once: &[&str], stuck: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            started: Mutex::default(),
            handled_again: Mutex::default(),
            acknowledgements: Arc::new(tokio::sync::Semaphore::new(0)),
            fail_once: Mutex::new(fail_once.iter().map(|s| (*s).to_owned()).collect()),
            stuck: stuck.map(str::to_owned),
        })
    }

    fn started(&self) -> Vec<String> {
        self.started.lock().unwrap().clone()
    }
}

impl Handler for Pipelined {
    async fn handle(&self, message: &OwnedMessage) -> Result<(), HandlerError> {
        self.handled_again.lock().unwrap().push(payload(message));
        Ok(())
    }

    async fn start(
        &self,
        message: &OwnedMessage,
    ) -> Result<Option<consumer::Durable>, HandlerError> {
        let value = payload(message);
        self.started.lock().unwrap().push(value.clone());
        let fails = self.fail_once.lock().unwrap().remove(&value);
        let stuck = self.stuck.as_deref() == Some(value.as_str());
        let acknowledgements = Arc::clone(&self.acknowledgements);
        Ok(Some(Box::pin(async move {
            if stuck {
                std::future::pending::<()>().await;
            }
            acknowledgements.acquire().await.unwrap().forget();
            if fails { Err(HandlerError::new("the broker refused an output")) } else { Ok(()) }
        })))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_starts_its_next_records_while_earlier_ones_await_acknowledgement_and_a_failed_one_is_handled_again()
 {
    let f = Fixture::new(1).await;
    let batch: Vec<(&str, String)> = (0..10).map(|i| ("same", i.to_string())).collect();
    let refs: Vec<(&str, &str)> = batch.iter().map(|(k, v)| (*k, v.as_str())).collect();
    f.produce(&refs).await;

    let handler = Pipelined::new(&["4"], None);
    let (stop, task) = f.start_handler(f.kafka(), "g-pipelined", Arc::clone(&handler));
    eventually("every record started before any was acknowledged", || {
        handler.started().len() == 10
    })
    .await;
    let in_order: Vec<String> = (0..10).map(|i| i.to_string()).collect();
    assert_eq!(handler.started(), in_order, "one key's records start in order");
    handler.acknowledgements.add_permits(10);
    eventually("the record whose output failed is handled again", || {
        !handler.handled_again.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(*handler.handled_again.lock().unwrap(), ["4"]);

    f.produce(&[("same", "after")]).await;
    let next = Pipelined::new(&[], None);
    next.acknowledgements.add_permits(100);
    let (stop, task) = f.start_handler(f.kafka(), "g-pipelined", Arc::clone(&next));
    eventually("the new record arrives", || next.started().contains(&"after".to_owned())).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(next.started(), ["after"], "all ten were committed once acknowledged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offset_is_stored_only_once_every_earlier_records_outputs_are_acknowledged() {
    let f = Fixture::new(1).await;
    let batch: Vec<(&str, String)> = (0..10).map(|i| ("same", i.to_string())).collect();
    let refs: Vec<(&str, &str)> = batch.iter().map(|(k, v)| (*k, v.as_str())).collect();
    f.produce(&refs).await;

    let handler = Pipelined::new(&[], Some("3"));
    handler.acknowledgements.add_permits(100);
    let mut kafka = f.kafka();
    kafka.consumer.drain_deadline_ms = 500;
    let (stop, task) = f.start_handler(kafka, "g-pipelined-prefix", Arc::clone(&handler));
    eventually("every record started", || handler.started().len() == 10).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.cancel();
    task.await.unwrap();

    let next = Pipelined::new(&[], None);
    next.acknowledgements.add_permits(100);
    let (stop, task) = f.start_handler(f.kafka(), "g-pipelined-prefix", Arc::clone(&next));
    eventually("the rest is redelivered", || next.started().len() >= 7).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.cancel();
    task.await.unwrap();
    let expected: Vec<String> = (3..10).map(|i| i.to_string()).collect();
    assert_eq!(next.started(), expected, "resumes at the record still awaiting acknowledgement");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_one_pipelined_per_key_a_keys_next_record_waits_for_the_previous_acknowledgement() {
    let f = Fixture::new(1).await;
    f.produce(&[("same", "0"), ("same", "1"), ("same", "2")]).await;
    let handler = Pipelined::new(&[], None);
    let mut kafka = f.kafka();
    kafka.consumer.pipelined_per_key = 1;
    let (stop, task) = f.start_handler(kafka, "g-one-per-key", Arc::clone(&handler));
    eventually("the first record started", || handler.started().len() == 1).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(handler.started(), ["0"], "nothing else starts before its acknowledgement");
    handler.acknowledgements.add_permits(1);
    eventually("the second record started", || handler.started().len() == 2).await;
    handler.acknowledgements.add_permits(10);
    eventually("all started", || handler.started().len() == 3).await;
    stop.cancel();
    task.await.unwrap();
    assert_eq!(handler.started(), ["0", "1", "2"]);
}
