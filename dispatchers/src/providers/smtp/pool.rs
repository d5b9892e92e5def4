//! Herald's own pool of SMTP sessions, on sockets with Nagle's algorithm off.
//!
//! lettre 0.11's pooled transport opens its sockets with Nagle's algorithm on and writes a
//! message's body and its end marker (`CRLF . CRLF`) as two writes. The marker then waits
//! for the relay's delayed ACK (40 ms on Linux) before it leaves, so every message cost a
//! session about 44 ms whatever the relay did, and a pool of 8 sessions moved at most ~180
//! mails a second. lettre offers no socket options, so Herald opens the socket (and the
//! implicit-TLS session) itself and hands it to lettre's SMTP client, which still speaks
//! the protocol: EHLO, STARTTLS, AUTH, MAIL/RCPT/DATA.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use lettre::transport::smtp::response::Response;
use prometheus::IntCounterVec;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::{SmtpConfig, SmtpTls};

/// A session idle at least this long is asked NOOP before it carries a message: relays
/// close idle sessions, and a message should not be the thing that finds out.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(1);
/// Sessions idle longer than this are closed instead of reused (lettre's default too).
const MAX_IDLE: Duration = Duration::from_secs(60);

fn sessions_opened() -> &'static IntCounterVec {
    static METRIC: OnceLock<IntCounterVec> = OnceLock::new();
    METRIC.get_or_init(|| {
        herald_runtime::metrics::counter_vec(
            "herald_smtp_sessions_opened_total",
            "SMTP sessions opened to a relay; near the messages sent when the relay closes them.",
            &["relay"],
        )
    })
}

pub(crate) fn define_metrics() {
    let _ = sessions_opened();
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpSendError {
    #[error("cannot connect to SMTP relay {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("TLS handshake with SMTP relay {address} failed: {source}")]
    Tls { address: String, source: std::io::Error },
    #[error("SMTP relay {address} did not finish the message within {timeout:?}")]
    TimedOut { address: String, timeout: Duration },
    #[error("SMTP relay {address}: {source}")]
    Smtp { address: String, source: lettre::transport::smtp::Error },
}

#[derive(Debug, thiserror::Error)]
pub enum SmtpPoolSetupError {
    #[error("{host:?} is not a name a TLS certificate can be checked against")]
    ServerName { host: String },
    #[error("cannot set up TLS to SMTP relay {host}: {source}")]
    Tls { host: String, source: lettre::transport::smtp::Error },
    #[error("cannot read CA certificates from dispatch.email.smtp.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
}

/// Sessions to one relay: reused most recent first, at most `max_idle` kept open while idle.
/// How many are busy at once is bounded by the provider's concurrency slots, not here.
#[derive(Clone)]
pub(crate) struct SmtpPool {
    relay: Arc<Relay>,
    idle: Arc<Mutex<Vec<Parked>>>,
    max_idle: usize,
}

impl fmt::Debug for SmtpPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpPool").field("relay", &self.relay.address()).finish_non_exhaustive()
    }
}

struct Relay {
    host: String,
    port: u16,
    security: Security,
    credentials: Option<Credentials>,
    hello: ClientId,
    timeout: Duration,
}

enum Security {
    Plain,
    Starttls(TlsParameters),
    Implicit(TlsConnector, ServerName<'static>),
}

struct Parked {
    session: AsyncSmtpConnection,
    since: Instant,
}

impl SmtpPool {
    pub(crate) fn new(
        smtp: &SmtpConfig,
        credentials: Option<Credentials>,
    ) -> Result<Self, SmtpPoolSetupError> {
        let host = smtp.host.clone();
        let extra_roots = match &smtp.ca_file {
            Some(path) => read_ca_file(path)?,
            None => Vec::new(),
        };
        let tls_error = |source| SmtpPoolSetupError::Tls { host: host.clone(), source };
        let security = match smtp.tls {
            SmtpTls::None => Security::Plain,
            SmtpTls::Starttls => {
                let mut parameters = TlsParameters::builder(host.clone());
                for der in &extra_roots {
                    let certificate = Certificate::from_der(der.to_vec()).map_err(tls_error)?;
                    parameters = parameters.add_root_certificate(certificate);
                }
                Security::Starttls(parameters.build_rustls().map_err(tls_error)?)
            }
            SmtpTls::Implicit => {
                let name = ServerName::try_from(host.clone())
                    .map_err(|_| SmtpPoolSetupError::ServerName { host: host.clone() })?;
                let mut roots =
                    rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
                for certificate in extra_roots {
                    roots.add(certificate).map_err(|e| SmtpPoolSetupError::CaFile {
                        path: smtp.ca_file.clone().unwrap_or_default(),
                        reason: e.to_string(),
                    })?;
                }
                let config = rustls::ClientConfig::builder()
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Security::Implicit(TlsConnector::from(Arc::new(config)), name)
            }
        };
        let relay = Relay {
            host,
            port: smtp.port,
            security,
            credentials,
            hello: ClientId::default(),
            timeout: Duration::from_millis(smtp.timeout_ms),
        };
        let max_idle = usize::try_from(smtp.pool_size.max(1)).unwrap_or(1);
        Ok(Self { relay: Arc::new(relay), idle: Arc::default(), max_idle })
    }

    /// Sends one message on a pooled session (or a new one), all within the relay's timeout.
    pub(crate) async fn send(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, SmtpSendError> {
        let timeout = self.relay.timeout;
        match tokio::time::timeout(timeout, self.send_unbounded(envelope, message)).await {
            Ok(result) => result,
            // The session was dropped with the future: it is closed, never reused.
            Err(_) => Err(SmtpSendError::TimedOut { address: self.relay.address(), timeout }),
        }
    }

    async fn send_unbounded(
        &self,
        envelope: &Envelope,
        message: &[u8],
    ) -> Result<Response, SmtpSendError> {
        let mut session = match self.reusable().await {
            Some(session) => session,
            None => self.relay.connect().await?,
        };
        let result = session.send(envelope, message).await;
        // lettre marks a session broken (and sends QUIT) after any failed command.
        if !session.has_broken() {
            self.park(session);
        }
        result.map_err(|source| SmtpSendError::Smtp { address: self.relay.address(), source })
    }

    async fn reusable(&self) -> Option<AsyncSmtpConnection> {
        loop {
            let parked = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()?;
            let idle_for = parked.since.elapsed();
            let mut session = parked.session;
            if idle_for > MAX_IDLE {
                continue;
            }
            if idle_for < CHECK_AFTER_IDLE || session.test_connected().await {
                return Some(session);
            }
        }
    }

    fn park(&self, session: AsyncSmtpConnection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        idle.retain(|parked| parked.since.elapsed() <= MAX_IDLE);
        if idle.len() < self.max_idle {
            idle.push(Parked { session, since: Instant::now() });
        }
    }

    /// Sessions open and idle now.
    #[cfg(test)]
    fn idle_sessions(&self) -> usize {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// The certificates in the PEM file at `path` (at least one).
fn read_ca_file(path: &str) -> Result<Vec<CertificateDer<'static>>, SmtpPoolSetupError> {
    let failed = |reason: String| SmtpPoolSetupError::CaFile { path: path.to_owned(), reason };
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| failed(e.to_string()))?;
    if certificates.is_empty() {
        return Err(failed("no PEM certificate in it".into()));
    }
    Ok(certificates)
}

impl Relay {
    fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    async fn socket(&self) -> Result<TcpStream, SmtpSendError> {
        let connect_error = |source| SmtpSendError::Connect { address: self.address(), source };
        let socket =
            TcpStream::connect((self.host.as_str(), self.port)).await.map_err(connect_error)?;
        socket.set_nodelay(true).map_err(connect_error)?;
        Ok(socket)
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SmtpSendError> {
        let socket = self.socket().await?;
        let stream: Box<dyn AsyncTokioStream> = match &self.security {
            Security::Implicit(connector, name) => {
                let tls = connector
                    .connect(name.clone(), socket)
                    .await
                    .map_err(|source| SmtpSendError::Tls { address: self.address(), source })?;
                Box::new(ImplicitTls(tls))
            }
            Security::Plain | Security::Starttls(_) => Box::new(socket),
        };
        let smtp_error = |source| SmtpSendError::Smtp { address: self.address(), source };
        let mut session = AsyncSmtpConnection::connect_with_transport(stream, &self.hello)
            .await
            .map_err(smtp_error)?;
        if let Security::Starttls(parameters) = &self.security {
            session.starttls(parameters.clone(), &self.hello).await.map_err(smtp_error)?;
        }
        if let Some(credentials) = &self.credentials {
            session.auth(DEFAULT_MECHANISMS, credentials).await.map_err(smtp_error)?;
        }
        sessions_opened().with_label_values(&[&self.address()]).inc();
        Ok(session)
    }
}

/// A TLS session from the first byte (SMTPS), in the shape lettre's client takes.
#[derive(Debug)]
struct ImplicitTls(TlsStream<TcpStream>);

impl AsyncRead for ImplicitTls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ImplicitTls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for ImplicitTls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(port: u16) -> SmtpConfig {
        SmtpConfig { host: "127.0.0.1".into(), port, ..SmtpConfig::default() }
    }

    #[tokio::test]
    async fn sockets_to_the_relay_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let pool = SmtpPool::new(&config(listener.local_addr().unwrap().port()), None).unwrap();
        let socket = pool.relay.socket().await.unwrap();
        assert!(socket.nodelay().unwrap(), "Nagle delays each message's end marker by 40 ms");
    }

    #[tokio::test]
    async fn an_unreachable_relay_is_a_connect_error_naming_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let pool = SmtpPool::new(&config(port), None).unwrap();
        let envelope = Envelope::new(None, vec!["a@example.com".parse().unwrap()]).unwrap();
        let error = pool.send(&envelope, b"Subject: x\r\n\r\nx").await.unwrap_err();
        assert!(matches!(error, SmtpSendError::Connect { .. }), "{error}");
        assert!(error.to_string().contains(&format!("127.0.0.1:{port}")), "{error}");
        assert_eq!(pool.idle_sessions(), 0);
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused_at_start_up() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "not a certificate\n").unwrap();
        let ca_file = Some(path.display().to_string());
        let smtp = SmtpConfig { tls: SmtpTls::Starttls, ca_file, ..config(587) };
        let error = SmtpPool::new(&smtp, None).unwrap_err();
        assert!(matches!(error, SmtpPoolSetupError::CaFile { .. }), "{error}");
        let missing = SmtpConfig { ca_file: Some("/nonexistent/ca.pem".into()), ..smtp };
        assert!(matches!(SmtpPool::new(&missing, None), Err(SmtpPoolSetupError::CaFile { .. })));
    }

    #[test]
    fn implicit_tls_needs_a_host_name_a_certificate_can_name() {
        let smtp = SmtpConfig { host: "not a host".into(), tls: SmtpTls::Implicit, ..config(465) };
        assert!(matches!(SmtpPool::new(&smtp, None), Err(SmtpPoolSetupError::ServerName { .. })));
    }
}
