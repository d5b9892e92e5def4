//! The SMTP provider against a real SMTP server (the development sink): messages share
//! pooled sessions instead of opening one each, and a relay that stops answering fails the
//! message as retryable within the relay's timeout instead of holding its slot forever.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use herald::dev::mail_sink::MailSink;
use herald_dispatchers::config::{EmailConfig, SmtpConfig};
use herald_dispatchers::providers::smtp::SmtpProvider;
use herald_dispatchers::providers::{DeliveryError, Provider};
use herald_schemas::{ChannelMessage, EmailContent};

fn provider(sink: &MailSink, timeout_ms: u64) -> SmtpProvider {
    let smtp = SmtpConfig {
        host: sink.addr().ip().to_string(),
        port: sink.addr().port(),
        timeout_ms,
        ..SmtpConfig::default()
    };
    SmtpProvider::new(&EmailConfig { smtp, ..EmailConfig::default() }).unwrap()
}

fn message(i: usize) -> ChannelMessage {
    ChannelMessage {
        notification_id: format!("n-{i}"),
        channel: "email".into(),
        target: format!("user{i}@example.com"),
        route: "default".into(),
        category: "transactional".into(),
        email: Some(EmailContent {
            subject: format!("Message {i}"),
            text: Some("plain".into()),
            html: None,
        }),
        ..ChannelMessage::default()
    }
}

fn sink() -> MailSink {
    MailSink::start(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap()
}

#[tokio::test]
async fn smtp_messages_one_after_another_share_one_pooled_session() {
    let sink = sink();
    let smtp = provider(&sink, 10_000);
    for i in 0..20 {
        smtp.send(&message(i)).await.unwrap();
    }
    assert_eq!(sink.total(), 20);
    assert_eq!(sink.greetings(), 1, "every message after the first reuses the session");
}

#[tokio::test]
async fn smtp_relay_that_stops_answering_fails_the_message_as_retryable_and_is_not_reused() {
    let sink = sink();
    let smtp = provider(&sink, 300);
    smtp.send(&message(0)).await.unwrap();

    sink.set_delay(Some(Duration::from_secs(3)));
    let outcome = tokio::time::timeout(Duration::from_secs(2), smtp.send(&message(1))).await;
    let error = outcome.expect("the relay's timeout bounds the send").unwrap_err();
    let DeliveryError::Transient { reason, .. } = &error else {
        panic!("a relay that does not answer is a transient failure: {error:?}");
    };
    assert!(reason.contains("did not finish the message within"), "{reason}");

    sink.set_delay(None);
    smtp.send(&message(2)).await.unwrap();
    assert_eq!(sink.greetings(), 2, "the session that timed out was closed, a new one opened");
}
