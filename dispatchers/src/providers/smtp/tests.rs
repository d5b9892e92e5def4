//! SMTP: messages as built for the relay, and the relay's answers mapped to outcomes.

use std::collections::BTreeMap;

use herald_schemas::{EmailContent, Sender};

use super::*;

fn message() -> ChannelMessage {
    ChannelMessage {
        notification_id: "n-1".into(),
        channel: "email".into(),
        target: "ada@example.com".into(),
        user_id: None,
        app_id: None,
        route: "default".into(),
        category: "transactional".into(),
        accepted_at: 0,
        from: Some(Sender { email: Some("team@example.com".into()), name: Some("Team".into()) }),
        email: Some(EmailContent {
            subject: "Hello".into(),
            text: Some("plain".into()),
            html: Some("<p>rich</p>".into()),
        }),
        sms: None,
        push: None,
        metadata: BTreeMap::new(),
        fallback: None,
        ..ChannelMessage::default()
    }
}

fn provider() -> SmtpProvider {
    SmtpProvider::new(&EmailConfig::default()).unwrap()
}

// The SMTP transport's pool needs a runtime, even when nothing is sent.
#[tokio::test]
async fn builds_multipart_with_stable_message_id() {
    let p = provider();
    let raw = String::from_utf8(p.build(&message()).unwrap().formatted()).unwrap();
    assert!(raw.contains("multipart/alternative"), "{raw}");
    assert!(raw.contains("From: Team <team@example.com>"), "{raw}");
    let id = p.message_id(&message());
    assert!(raw.contains(&id), "{raw}");
    assert_eq!(id, p.message_id(&message()), "stable across attempts");
    let mut other = message();
    other.target = "bob@example.com".into();
    assert_ne!(id, p.message_id(&other), "distinct per target");
    assert!(!raw.contains("List-Unsubscribe"), "transactional mail has none: {raw}");
}

#[tokio::test]
async fn marketing_mail_carries_list_unsubscribe() {
    let config = EmailConfig {
        unsubscribe: Unsubscribe {
            url: Some("https://prefs.example.com/u/{notification_id}".into()),
            ..Unsubscribe::default()
        },
        ..EmailConfig::default()
    };
    let p = SmtpProvider::new(&config).unwrap();
    let mut m = message();
    m.category = "marketing".into();
    let raw = String::from_utf8(p.build(&m).unwrap().formatted()).unwrap();
    assert!(raw.contains("List-Unsubscribe: <https://prefs.example.com/u/n-1>"), "{raw}");
    assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"), "{raw}");
}

#[tokio::test]
async fn bad_addresses_are_permanent_and_missing_content_is_invalid() {
    let p = provider();
    let mut m = message();
    m.target = "not an address".into();
    assert!(matches!(p.build(&m), Err(DeliveryError::Permanent { .. })));
    let mut m = message();
    m.email = None;
    assert!(matches!(p.build(&m), Err(DeliveryError::Invalid { .. })));
}
