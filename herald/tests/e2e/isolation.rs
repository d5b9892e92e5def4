//! Channels are isolated: each has its own topic, consumer group and providers, so one
//! provider hanging never slows another channel.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use herald_dispatchers::config::{ProviderConfig, ProviderLimits};
use herald_dispatchers::providers::pushy::PushySettings;
use herald_enricher::Platform;
use herald_runtime::SecretSource;
use herald_schemas::Channel;
use herald_standins::pushy::PushyStandIn;
use support::{TestEnv, add_user};

/// An SMTP relay that accepts connections and never says a word.
fn hanging_smtp_relay() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_email_provider_leaves_push_delivering() {
    let mut env = TestEnv::start().await;
    let relay = hanging_smtp_relay();
    env.config.dispatch.email.smtp.host = relay.ip().to_string();
    env.config.dispatch.email.smtp.port = relay.port();
    env.config.dispatch.email.smtp.timeout_ms = 30_000;
    env.config.dispatch.ledger.claim_timeout_ms = 60_000;
    let pushy = PushyStandIn::start("pushy-key").await.unwrap();
    let key_file = env.dir.path().join("pushy-key");
    std::fs::write(&key_file, "pushy-key").unwrap();
    let settings = PushySettings {
        api_key: SecretSource::File(key_file.display().to_string()),
        time_to_live_secs: 60,
        base_url: Some(pushy.base_url()),
        limits: ProviderLimits::default(),
    };
    env.config.dispatch.providers.insert("pushy".into(), ProviderConfig::Pushy(settings));
    env.config
        .dispatch
        .routes
        .insert("android".into(), BTreeMap::from([("default".into(), vec!["pushy".into()])]));
    for n in 0..20 {
        let user = format!("u{n}");
        add_user(&env, &user, &format!("{user}@example.com")).await;
        support::add_device(&env, &user, Platform::Android, &format!("pushy-token-{n}"), None)
            .await;
    }
    let pipeline = env.pipeline_with(&[Channel::Android]).await;
    let key = env.api_key().await;
    for n in 0..20 {
        let body = serde_json::json!({
            "to": [{"user_id": format!("u{n}")}],
            "subject": "Your order shipped",
            "content": [{"type": "text/plain", "value": "It is on its way."}],
            "push": {"title": "Shipped", "body": "It is on its way."},
        });
        let (status, answer) = pipeline.post(Some(&key), &body.to_string()).await;
        assert_eq!(status, 202, "{answer}");
    }
    // Well before the relay's 30 s timeout could release anything.
    let deadline = Instant::now() + Duration::from_secs(20);
    while pushy.accepted().len() < 20 {
        assert!(
            Instant::now() < deadline,
            "push stalled behind the hanging email relay: {} of 20",
            pushy.accepted().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.mail.total(), 0, "the relay never answered, so no email went out");
    pipeline.stop().await;
}
