//! API clients as operators and callers meet them across roles: a key revoked with the CLI
//! is refused by the running API (scopes and rates are tested with the API, in
//! `ingest/tests/api`). Status webhooks: a client's events posted to its URL, signed, retried, dead-lettered.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use herald_ingest::ApiClients;
use rdkafka::message::{Headers as _, Message as _};
use support::{TestEnv, add_user, email_body, herald_output};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_with_the_cli_is_refused_by_the_running_api_within_a_second() {
    let env = TestEnv::start().await;
    add_user(&env, "revoked", "revoked@example.com").await;
    let clients = ApiClients::open(&env.config.ingest.store_path).unwrap();
    let (client, key) = clients.add("leaked").await.unwrap();
    let pipeline = env.pipeline().await;
    let body = email_body("revoked", "Hello", "Hi");
    let (status, answer) = pipeline.post(Some(&key), &body).await;
    assert_eq!(status, 202, "{answer}");

    herald_output(&env, &["clients", "revoke", &client.client_id]);
    tokio::time::sleep(herald_ingest::RECENT_KEY_TTL).await;
    let (status, answer) = pipeline.post(Some(&key), &body).await;
    assert_eq!(status, 401, "{answer}");
    assert_eq!(answer["message"], "unknown or revoked API key");
    pipeline.stop().await;
}

/// What a caller's endpoint received: path, signature header, body.
type Posts = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// A caller's webhook endpoint: `/flaky` answers 500 to the first two posts of each event,
/// `/broken` always.
async fn webhook_endpoint() -> (String, Posts) {
    async fn receive(
        State(posts): State<Posts>,
        Path(path): Path<String>,
        headers: HeaderMap,
        body: String,
    ) -> StatusCode {
        let signature = headers
            .get("herald-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let json: serde_json::Value = serde_json::from_str(&body).unwrap();
        let mut posts = posts.lock().unwrap();
        let earlier = posts.iter().filter(|(p, _, b)| *p == path && b["id"] == json["id"]).count();
        posts.push((path.clone(), format!("{signature}|{body}"), json));
        if path == "broken" || earlier < 2 {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    }
    let posts = Posts::default();
    let app = axum::Router::new()
        .route("/{path}", axum::routing::post(receive))
        .with_state(Arc::clone(&posts));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, posts)
}

/// Checks `Herald-Signature: t=..,v1=..` over `body` with `secret`, as a caller would.
fn signed_by(secret: &str, signature_and_body: &str) -> bool {
    let (signature, body) = signature_and_body.split_once('|').unwrap();
    let (t, v1) = signature.split_once(",v1=").unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hex::decode(v1).unwrap();
    ring::hmac::verify(&key, format!("{t}.{body}").as_bytes(), &tag).is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callers_webhook_gets_signed_events_retried_while_it_fails_and_dead_lettered_after_the_last_tier()
 {
    let _alone = WEBHOOK_SENDERS_READING.lock().await;
    let env = TestEnv::start().await;
    add_user(&env, "hooked", "hooked@example.com").await;
    let (endpoint, posts) = webhook_endpoint().await;
    let clients = ApiClients::open(&env.config.ingest.store_path).unwrap();
    let (shop, shop_key) = clients.add("shop").await.unwrap();
    let (legacy, legacy_key) = clients.add("legacy").await.unwrap();
    let set = |client: &str, path: &str| {
        let url = format!("{endpoint}/{path}");
        let out = herald_output(
            &env,
            &["clients", "webhook", client, "--url", &url, "--event", "sent", "--event", "failed"],
        );
        out.lines()
            .find_map(|l| l.strip_prefix("signing secret (shown once): "))
            .unwrap()
            .to_owned()
    };
    let secret = set(&shop.client_id, "flaky");
    set(&legacy.client_id, "broken");
    let pipeline = env.pipeline().await;
    let (_, body) = pipeline.post(Some(&shop_key), &email_body("hooked", "Shop", "hi")).await;
    let shop_id = body["id"].as_str().unwrap().to_owned();
    let (_, body) = pipeline.post(Some(&legacy_key), &email_body("hooked", "Legacy", "hi")).await;
    let legacy_id = body["id"].as_str().unwrap().to_owned();

    // A failing caller does not hold up delivery.
    let mail = env
        .mail
        .wait_for(Duration::from_secs(30), |m| m.header("Subject").as_deref() == Some("Legacy"));
    mail.await.expect("the legacy client's notification is delivered while its webhook fails");

    let deadline = Instant::now() + Duration::from_secs(40);
    let of = |path: &str, id: &str| -> Vec<(String, serde_json::Value)> {
        let posts = posts.lock().unwrap();
        posts
            .iter()
            .filter(|(p, _, b)| p == path && b["notification_id"] == id)
            .map(|(_, raw, b)| (raw.clone(), b.clone()))
            .collect()
    };
    while of("flaky", &shop_id).len() < 3 || of("broken", &legacy_id).len() < 3 {
        assert!(Instant::now() < deadline, "posts so far: {:?}", posts.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let shop_posts = of("flaky", &shop_id);
    assert!(shop_posts.iter().all(|(_, b)| b["type"] == "sent"), "only the kinds asked for");
    assert_eq!(shop_posts.len(), 3, "500, 500, then 200: no more posts after the 200");
    assert!(shop_posts.iter().all(|(_, b)| b["id"] == shop_posts[0].1["id"]), "one event");
    assert!(shop_posts.iter().all(|(raw, _)| signed_by(&secret, raw)), "signed with its secret");
    assert!(!signed_by("whsec_other", &shop_posts[0].0));
    assert_eq!(shop_posts[0].1["channel"], "email");

    // The broken endpoint's event goes to the dead-letter topic after the last tier.
    let dlq = env.topics().dlq();
    let webhooks = env.group("webhooks");
    let letters = env
        .read_topic(&dlq, Duration::from_secs(20), |records| {
            records.iter().any(|r| {
                r.headers().is_some_and(|h| {
                    h.iter().any(|h| {
                        h.key == "herald-failed-group" && h.value == Some(webhooks.as_bytes())
                    })
                })
            })
        })
        .await;
    let letter = letters
        .iter()
        .find(|r| {
            r.headers().is_some_and(|h| h.iter().any(|h| h.value == Some(webhooks.as_bytes())))
        })
        .expect("dead-lettered");
    let reason = letter
        .headers()
        .unwrap()
        .iter()
        .find(|h| h.key == "herald-error-reason")
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .unwrap();
    assert!(reason.contains("after 3 attempt(s)") && reason.contains("500"), "{reason}");
    assert_eq!(of("broken", &legacy_id).len(), 3, "no post after the dead letter");
    pipeline.stop().await;
}

/// Held by the tests whose webhook senders read events: the count of records they fetched
/// is one counter for the whole test process.
static WEBHOOK_SENDERS_READING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Records the webhook sender's group fetched in this test's process (its /metrics counter).
fn webhook_records_fetched(env: &TestEnv) -> u64 {
    let needle = format!("herald_consumer_records_total{{group=\"{}\"}} ", env.group("webhooks"));
    let text = herald_runtime::metrics::render();
    text.lines()
        .find_map(|l| l.strip_prefix(needle.as_str()))
        .map_or(0, |value| value.trim().parse().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_sender_reads_no_events_until_a_webhook_exists_then_posts_from_its_registration_on()
 {
    let _alone = WEBHOOK_SENDERS_READING.lock().await;
    let env = TestEnv::start().await;
    add_user(&env, "late", "late@example.com").await;
    let (endpoint, posts) = webhook_endpoint().await;
    let clients = ApiClients::open(&env.config.ingest.store_path).unwrap();
    let (client, key) = clients.add("late-shop").await.unwrap();
    let pipeline = env.pipeline().await;
    let fetched_before = webhook_records_fetched(&env);

    let (_, body) = pipeline.post(Some(&key), &email_body("late", "Before", "hi")).await;
    let before = body["id"].as_str().unwrap().to_owned();
    let sent = env
        .mail
        .wait_for(Duration::from_secs(30), |m| m.header("Subject").as_deref() == Some("Before"));
    sent.await.expect("delivered without any webhook");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, status) = pipeline.get(&key, &format!("/v1/notifications/{before}")).await;
        if status.to_string().contains("\"sent\"") {
            break;
        }
        assert!(Instant::now() < deadline, "status never showed the send: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The status sink has read the events by now; a sender reading them would have too.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        webhook_records_fetched(&env),
        fetched_before,
        "no events read while no client has a webhook"
    );

    let url = format!("{endpoint}/late");
    herald_output(&env, &["clients", "webhook", &client.client_id, "--url", &url]);
    let (_, body) = pipeline.post(Some(&key), &email_body("late", "After", "hi")).await;
    let after = body["id"].as_str().unwrap().to_owned();
    let posted = |id: &str| {
        posts.lock().unwrap().iter().filter(|(_, _, b)| b["notification_id"] == id).count()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while posted(&after) == 0 {
        assert!(Instant::now() < deadline, "no post for the notification sent after registering");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Once the sender's group has read every event there is, whatever it would post for
    // the earlier notification it has posted.
    let events = vec![env.topics().events()];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kafka = env.config.kafka.clone();
        let events = events.clone();
        let positions = tokio::task::spawn_blocking(move || {
            let group = kafka.group("webhooks");
            herald_runtime::kafka::group_offsets::lag(&kafka, &group, &events)
        })
        .await
        .unwrap()
        .unwrap();
        if positions.iter().all(|p| p.committed.is_some() && p.lag() == 0) {
            break;
        }
        assert!(Instant::now() < deadline, "the webhook sender never caught up: {positions:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let early: Vec<_> = posts
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, _, b)| b["notification_id"] == before)
        .map(|(_, _, b)| b.clone())
        .collect();
    assert_eq!(
        posted(&before),
        0,
        "nothing posted for events from before the registration: {early:?}"
    );
    pipeline.stop().await;
}
