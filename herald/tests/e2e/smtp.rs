//! The SMTP provider against a real SMTP server (the development sink): messages share
//! pooled sessions instead of opening one each; a relay that stops answering fails the
//! message as retryable within the relay's timeout instead of holding its slot forever;
//! STARTTLS and implicit TLS check the relay's certificate (here against a test CA given as
//! `ca_file`) and refuse one they cannot trust.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use herald_dispatchers::config::{EmailConfig, SmtpConfig, SmtpTls};
use herald_dispatchers::providers::smtp::SmtpProvider;
use herald_dispatchers::providers::{DeliveryError, Provider};
use herald_schemas::{ChannelMessage, EmailContent};
use herald_testkit::mail_sink::{MailSink, SinkOptions};
use rustls::pki_types::pem::PemObject;

fn provider(sink: &MailSink, timeout_ms: u64) -> SmtpProvider {
    let host = sink.addr().ip().to_string();
    provider_for(SmtpConfig { host, port: sink.addr().port(), timeout_ms, ..SmtpConfig::default() })
}

fn provider_for(smtp: SmtpConfig) -> SmtpProvider {
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
    let opened = format!("herald_smtp_sessions_opened_total{{relay=\"{}\"}} 1", sink.addr());
    assert!(herald_runtime::metrics::render().contains(&opened), "the pool counts its sessions");
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

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/smtp-tls/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// An SMTP provider for `localhost:port` over `tls`, trusting the test CA if `trust`.
fn tls_provider(port: u16, tls: SmtpTls, trust: bool) -> SmtpProvider {
    let ca_file = trust.then(|| fixture("ca.pem"));
    provider_for(SmtpConfig {
        host: "localhost".into(),
        port,
        tls,
        ca_file,
        ..SmtpConfig::default()
    })
}

fn starttls_sink() -> MailSink {
    herald_schemas::install_tls_provider();
    let (cert, key) = (fixture("server.pem"), fixture("server.key"));
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    MailSink::start_with_starttls(any_port, SinkOptions::default(), &cert, &key).unwrap()
}

#[tokio::test]
async fn smtp_starttls_upgrades_after_checking_the_relay_certificate_against_ca_file() {
    let sink = starttls_sink();
    let smtp = tls_provider(sink.addr().port(), SmtpTls::Starttls, true);
    smtp.send(&message(0)).await.unwrap();
    smtp.send(&message(1)).await.unwrap();
    assert_eq!(sink.total(), 2);
    assert_eq!(sink.greetings(), 2, "one EHLO before STARTTLS and one after, on one session");
}

#[tokio::test]
async fn smtp_starttls_refuses_a_relay_whose_certificate_it_cannot_trust() {
    let sink = starttls_sink();
    let smtp = tls_provider(sink.addr().port(), SmtpTls::Starttls, false);
    let error = smtp.send(&message(0)).await.unwrap_err();
    assert!(matches!(error, DeliveryError::Transient { .. }), "{error:?}");
    assert_eq!(sink.total(), 0, "nothing is sent over a session it could not secure");
}

/// A TLS listener in front of the plain sink, as a relay's port 465 is.
async fn implicit_tls_front(sink: &MailSink) -> u16 {
    herald_schemas::install_tls_provider();
    let certs = rustls::pki_types::CertificateDer::pem_file_iter(fixture("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_file(fixture("server.key")).unwrap();
    let config =
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(certs, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let relay = sink.addr();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else { return };
                let Ok(mut plain) = tokio::net::TcpStream::connect(relay).await else { return };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

#[tokio::test]
async fn smtp_implicit_tls_delivers_through_a_tls_session_from_the_first_byte() {
    let sink = sink();
    let port = implicit_tls_front(&sink).await;
    let smtp = tls_provider(port, SmtpTls::Implicit, true);
    smtp.send(&message(0)).await.unwrap();
    assert_eq!(sink.total(), 1);

    let untrusting = tls_provider(port, SmtpTls::Implicit, false);
    let error = untrusting.send(&message(1)).await.unwrap_err();
    assert!(
        matches!(error, DeliveryError::Transient { ref reason, .. } if reason.contains("TLS")),
        "{error:?}"
    );
    assert_eq!(sink.total(), 1);
}
