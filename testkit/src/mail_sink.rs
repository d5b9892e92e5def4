//! A local SMTP server that keeps what it receives: the delivery target of `herald dev` and
//! of the tests. It speaks real SMTP (mailin), so the email dispatcher's SMTP client,
//! pooling and error handling are exercised exactly as against a relay. Addresses can be
//! set to be refused with a given reply, and a share of all deliveries can be refused
//! transiently at random, to see how Herald classifies and retries failures.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mailin_embedded::response::{self, Response};
use mailin_embedded::{Handler, Server, SslConfig};
use serde::Serialize;
use tokio::sync::Notify;

/// One message as the server received it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReceivedMail {
    pub from: String,
    pub to: Vec<String>,
    /// The message as sent (headers and MIME body), CRLF line ends.
    pub raw: String,
}

impl ReceivedMail {
    /// The first header with `name` (case-insensitive), unfolded.
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.raw.split("\r\n\r\n").next()?;
        let mut found: Option<String> = None;
        for line in head.split("\r\n") {
            if line.starts_with([' ', '\t']) {
                if let Some(value) = found.as_mut() {
                    value.push_str(line.trim_start());
                }
                continue;
            }
            if found.is_some() {
                break;
            }
            if let Some((key, value)) = line.split_once(':')
                && key.eq_ignore_ascii_case(name)
            {
                found = Some(value.trim().to_owned());
            }
        }
        found
    }
}

/// How an address is refused: with which reply, how many more times (`None`: always).
#[derive(Debug, Clone)]
struct Refusal {
    code: u16,
    message: String,
    remaining: Option<u32>,
}

#[derive(Debug, Default)]
struct State {
    /// The most recent messages, oldest first, at most `options.keep_messages`.
    received: VecDeque<ReceivedMail>,
    /// Messages accepted per recipient, over the whole run.
    per_recipient: HashMap<String, u32>,
    total: u64,
    /// HELO/EHLO greetings: one per SMTP session (two with STARTTLS).
    greetings: u64,
    refusals: HashMap<String, Refusal>,
    /// Every RCPT TO, accepted or not, with when (ms since the epoch), if recorded.
    attempts: Vec<(String, i64)>,
    /// Time spent on each accepted message, as a slow relay would.
    delay: Option<Duration>,
    options: SinkOptions,
    /// xorshift state for random refusals.
    random: u64,
}

/// What the sink keeps and how it misbehaves.
#[derive(Debug, Clone)]
pub struct SinkOptions {
    /// How many of the most recent messages are kept whole (counts are kept for all).
    pub keep_messages: usize,
    /// Record every delivery attempt with its time ([`MailSink::attempts`]).
    pub record_attempts: bool,
    /// Share of recipients refused with `451` at random (a flaky relay).
    pub transient_failure_rate: f64,
}

impl Default for SinkOptions {
    fn default() -> Self {
        Self { keep_messages: usize::MAX, record_attempts: true, transient_failure_rate: 0.0 }
    }
}

impl State {
    fn next_random(&mut self) -> f64 {
        // xorshift64: plenty for sampling failures.
        let mut x = self.random.max(1);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.random = x;
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Debug, Default)]
struct Shared {
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Per-connection SMTP session state; mailin clones the handler for each connection.
#[derive(Clone, Debug)]
struct Session {
    shared: Shared,
    from: String,
    to: Vec<String>,
    data: Vec<u8>,
}

impl Handler for Session {
    fn helo(&mut self, _ip: std::net::IpAddr, _domain: &str) -> Response {
        self.shared.lock().greetings += 1;
        response::OK
    }

    fn mail(&mut self, _ip: std::net::IpAddr, _domain: &str, from: &str) -> Response {
        self.from = from.to_owned();
        self.to.clear();
        self.data.clear();
        response::OK
    }

    fn rcpt(&mut self, to: &str) -> Response {
        let mut state = self.shared.lock();
        if state.options.record_attempts {
            state.attempts.push((to.to_owned(), herald_schemas::now_millis()));
        }
        let rate = state.options.transient_failure_rate;
        if rate > 0.0 && state.next_random() < rate {
            return Response::custom(451, "4.3.0 temporary local problem (injected)".into());
        }
        if let Some(refusal) = state.refusals.get_mut(to) {
            let refuse = refusal.remaining.is_none_or(|n| n > 0);
            if let Some(n) = refusal.remaining.as_mut() {
                *n = n.saturating_sub(1);
            }
            if refuse {
                return Response::custom(refusal.code, refusal.message.clone());
            }
        }
        drop(state);
        self.to.push(to.to_owned());
        response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.data.extend_from_slice(buf);
        Ok(())
    }

    fn data_end(&mut self) -> Response {
        let delay = self.shared.lock().delay;
        if let Some(delay) = delay {
            std::thread::sleep(delay);
        }
        let mail = ReceivedMail {
            from: std::mem::take(&mut self.from),
            to: std::mem::take(&mut self.to),
            raw: String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned(),
        };
        let mut state = self.shared.lock();
        state.total += 1;
        for to in &mail.to {
            *state.per_recipient.entry(to.clone()).or_default() += 1;
        }
        if state.options.keep_messages > 0 {
            if state.received.len() >= state.options.keep_messages {
                state.received.pop_front();
            }
            state.received.push_back(mail);
        }
        drop(state);
        self.shared.arrived.notify_waiters();
        response::OK
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailSinkError {
    #[error("cannot bind the SMTP sink to {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("cannot start the SMTP sink: {0}")]
    Start(String),
}

/// A running SMTP sink. Its server thread lives as long as the process.
#[derive(Clone, Debug)]
pub struct MailSink {
    shared: Shared,
    addr: SocketAddr,
}

impl MailSink {
    /// Starts the server on `addr` (port 0 for any free port), keeping everything.
    pub fn start(addr: SocketAddr) -> Result<Self, MailSinkError> {
        Self::start_with(addr, SinkOptions::default())
    }

    pub fn start_with(addr: SocketAddr, options: SinkOptions) -> Result<Self, MailSinkError> {
        Self::start_serving(addr, options, SslConfig::None)
    }

    /// Like [`MailSink::start_with`], offering STARTTLS with the certificate chain and
    /// private key in these PEM files (a relay that requires TLS before MAIL).
    pub fn start_with_starttls(
        addr: SocketAddr,
        options: SinkOptions,
        cert_path: &str,
        key_path: &str,
    ) -> Result<Self, MailSinkError> {
        let ssl = SslConfig::SelfSigned { cert_path: cert_path.into(), key_path: key_path.into() };
        Self::start_serving(addr, options, ssl)
    }

    fn start_serving(
        addr: SocketAddr,
        options: SinkOptions,
        ssl: SslConfig,
    ) -> Result<Self, MailSinkError> {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|source| MailSinkError::Bind { addr, source })?;
        let bound = listener.local_addr().map_err(|source| MailSinkError::Bind { addr, source })?;
        let shared = Shared::default();
        {
            let mut state = shared.lock();
            state.options = options;
            state.random = u64::from(bound.port()) | 0x9e37_79b9_7f4a_7c15;
        }
        let session = Session {
            shared: shared.clone(),
            from: String::new(),
            to: Vec::new(),
            data: Vec::new(),
        };
        let mut server = Server::new(session);
        server
            .with_name("herald-mail-sink.localhost")
            .with_ssl(ssl)
            .map_err(|e| MailSinkError::Start(e.to_string()))?
            // A session holds a thread for as long as the client keeps the connection, and
            // SMTP clients pool connections: leave room for every pooled connection.
            .with_num_threads(64)
            .with_tcp_listener(listener);
        std::thread::Builder::new()
            .name("smtp-sink".into())
            .spawn(move || {
                if let Err(e) = server.serve() {
                    tracing::error!(error = %e, "SMTP sink stopped");
                }
            })
            .map_err(|e| MailSinkError::Start(e.to_string()))?;
        Ok(Self { shared, addr: bound })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The messages kept, oldest first.
    pub fn received(&self) -> Vec<ReceivedMail> {
        self.shared.lock().received.iter().cloned().collect()
    }

    /// Messages accepted over the whole run.
    pub fn total(&self) -> u64 {
        self.shared.lock().total
    }

    /// Forgets the messages received so far (kept, counted and per recipient).
    pub fn clear(&self) {
        let mut state = self.shared.lock();
        state.received.clear();
        state.per_recipient.clear();
        state.total = 0;
    }

    /// SMTP sessions clients opened (HELO/EHLO greetings) over the whole run.
    pub fn greetings(&self) -> u64 {
        self.shared.lock().greetings
    }

    /// Messages accepted per recipient over the whole run.
    pub fn per_recipient(&self) -> HashMap<String, u32> {
        self.shared.lock().per_recipient.clone()
    }

    /// From now on, `RCPT TO:<address>` is answered with `code message` (e.g. 550 for a
    /// permanent failure, 451 for a transient one).
    pub fn refuse(&self, address: &str, code: u16, message: &str) {
        self.refuse_times(address, code, message, None);
    }

    /// Like [`MailSink::refuse`], for the next `times` attempts only (`None`: always).
    pub fn refuse_times(&self, address: &str, code: u16, message: &str, times: Option<u32>) {
        let refusal = Refusal { code, message: message.to_owned(), remaining: times };
        self.shared.lock().refusals.insert(address.to_owned(), refusal);
    }

    /// Stops refusing `address`.
    pub fn accept(&self, address: &str) {
        self.shared.lock().refusals.remove(address);
    }

    /// When each delivery attempt to `address` reached the server (ms since the epoch).
    pub fn attempts(&self, address: &str) -> Vec<i64> {
        let state = self.shared.lock();
        state.attempts.iter().filter(|(to, _)| to == address).map(|(_, at)| *at).collect()
    }

    /// Every accepted message takes this long, like a slow relay.
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.lock().delay = delay;
    }

    /// Waits until a received mail satisfies `matches`, up to `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        matches: impl Fn(&ReceivedMail) -> bool,
    ) -> Option<ReceivedMail> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let arrived = self.shared.arrived.notified();
            if let Some(mail) = self.shared.lock().received.iter().find(|m| matches(m)) {
                return Some(mail.clone());
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                return None;
            }
        }
    }
}
