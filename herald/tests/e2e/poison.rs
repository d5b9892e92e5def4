//! Poison at scale: a thousand malformed records mixed into ten thousand good ones, on
//! `herald.requests` and on a channel topic. Every malformed one is dead-lettered with its
//! reason (or, a well-formed request for a user nobody knows, skipped with its reason),
//! every good one is delivered, and no partition stalls behind a bad record.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_runtime::kafka::{Ack, Message, header_str, wait_all};
use herald_schemas::{
    Channel, ChannelMessage, DeliveryEvent, EmailContent, EventKind, NotificationRequest,
    Recipient, headers,
};
use support::TestEnv;

const GOOD: usize = 10_000;
/// Of each kind of malformed request record.
const BAD_REQUESTS: usize = 200;
/// Of each kind of malformed channel message.
const BAD_MESSAGES: usize = 100;
const WAIT: Duration = Duration::from_secs(300);

fn good_request(i: usize) -> NotificationRequest {
    NotificationRequest {
        notification_id: format!("good-{i}"),
        accepted_at: herald_schemas::now_millis(),
        recipient: Recipient {
            email: Some(format!("good-{i}@example.com")),
            ..Recipient::default()
        },
        category: "transactional".into(),
        email: Some(EmailContent { subject: "Good".into(), text: Some(".".into()), html: None }),
        ..NotificationRequest::default()
    }
}

/// A record the registry never gave an id to: Confluent framing, id far past any issued.
fn unknown_schema_id(mut framed: Vec<u8>) -> Vec<u8> {
    framed[1..5].copy_from_slice(&0x7fff_fff0_u32.to_be_bytes());
    framed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_records_among_ten_thousand_are_dead_lettered_and_every_good_one_delivered()
 {
    let env = TestEnv::start().await;
    let codec = env.codec();
    let topics = env.topics();
    let requests = topics.requests();
    let email = topics.channel(Channel::Email);
    let producer = herald_runtime::kafka::Producer::new(&env.config.kafka, "poisoner").unwrap();

    let mut acks: Vec<Ack> = Vec::new();
    let mut bad_requests = 0;
    let mut bad_messages = 0;
    for i in 0..GOOD {
        let good = good_request(i);
        let framed = codec.encode(&requests, &good).await.unwrap();
        acks.push(
            producer
                .enqueue(&requests, Some(good.partition_key().as_bytes()), &framed, None)
                .await
                .unwrap(),
        );
        // Every tenth record is followed by a bad one, on a key of its own.
        if i % 10 != 0 {
            continue;
        }
        let key = format!("bad-{i}");
        let (topic, payload) = match (i / 10) % 10 {
            // Magic byte, then too few bytes to hold a schema id.
            0 | 1 => (&requests, b"\x00\x01".to_vec()),
            2 | 3 => {
                let mut wrong_magic = framed.clone();
                wrong_magic[0] = 1;
                (&requests, wrong_magic)
            }
            4 | 5 => (&requests, unknown_schema_id(framed.clone())),
            6 | 7 => {
                let mut stranger = good_request(i);
                stranger.notification_id = format!("stranger-{i}");
                stranger.recipient =
                    Recipient { user_id: Some(key.clone()), ..Recipient::default() };
                (&requests, codec.encode(&requests, &stranger).await.unwrap())
            }
            8 => (&email, b"{\"channel\": \"email\"}".to_vec()),
            _ => {
                let message = ChannelMessage {
                    notification_id: format!("bad-message-{i}"),
                    channel: "email".into(),
                    target: key.clone(),
                    ..ChannelMessage::default()
                };
                (&email, unknown_schema_id(codec.encode(&email, &message).await.unwrap()))
            }
        };
        if topic == &requests {
            bad_requests += 1;
        } else {
            bad_messages += 1;
        }
        acks.push(producer.enqueue(topic, Some(key.as_bytes()), &payload, None).await.unwrap());
        if acks.len() >= 2_000 {
            wait_all(std::mem::take(&mut acks)).await.unwrap();
        }
    }
    wait_all(acks).await.unwrap();
    assert_eq!((bad_requests, bad_messages), (4 * BAD_REQUESTS, 2 * BAD_MESSAGES));

    let started = Instant::now();
    let pipeline = env.pipeline().await;
    let deadline = Instant::now() + WAIT;
    while env.mail.per_recipient().len() < GOOD {
        assert!(
            Instant::now() < deadline,
            "delivered {} of {GOOD}",
            env.mail.per_recipient().len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let delivered_in = started.elapsed();
    let per = env.mail.per_recipient();
    assert!(per.values().all(|n| *n == 1), "each good one once");

    // Poison (garbage, a wrong magic byte, an unknown schema id) on both topics: 800.
    let expected_dead = 3 * BAD_REQUESTS + 2 * BAD_MESSAGES;
    let dead = env.read_topic(&topics.dlq(), WAIT, |r| r.len() >= expected_dead).await;
    assert_eq!(dead.len(), expected_dead);
    let mut by_topic: BTreeMap<String, usize> = BTreeMap::new();
    for letter in &dead {
        assert_eq!(header_str(letter, headers::ERROR_CLASS), Some("poison"));
        let reason = header_str(letter, headers::ERROR_REASON).unwrap_or_default();
        assert!(!reason.is_empty(), "a reason");
        assert!(letter.key().is_some_and(|k| k.starts_with(b"bad-")), "only bad ones");
        let topic = header_str(letter, headers::ORIGINAL_TOPIC).unwrap_or_default();
        *by_topic.entry(topic.to_owned()).or_default() += 1;
    }
    assert_eq!(by_topic.get(&requests), Some(&(3 * BAD_REQUESTS)), "{by_topic:?}");
    assert_eq!(by_topic.get(&email), Some(&(2 * BAD_MESSAGES)), "{by_topic:?}");

    // The well-formed request for a user nobody knows is an outcome, not a dead letter.
    let events = env
        .read_records::<DeliveryEvent>(&topics.events(), WAIT, |e| {
            e.iter().filter(|e| e.kind == EventKind::Skipped).count() >= BAD_REQUESTS
        })
        .await;
    let skipped: Vec<&DeliveryEvent> =
        events.iter().filter(|e| e.kind == EventKind::Skipped).collect();
    assert_eq!(skipped.len(), BAD_REQUESTS);
    assert!(skipped.iter().all(|e| e.notification_id.starts_with("stranger-")
        && e.reason.as_deref() == Some("unknown_user")));

    // No partition is left behind a bad record.
    for group in ["enricher", "dispatch-email"] {
        support::wait_until_caught_up(&env, group, Duration::from_secs(30)).await;
    }
    eprintln!(
        "{GOOD} good and {} bad records: every good one delivered in {:.1} s ({:.0}/s), {} dead-lettered, {} skipped",
        4 * BAD_REQUESTS + 2 * BAD_MESSAGES,
        delivered_in.as_secs_f64(),
        GOOD as f64 / delivered_in.as_secs_f64(),
        dead.len(),
        skipped.len(),
    );
    pipeline.stop().await;
}
