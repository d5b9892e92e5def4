//! The provider stand-ins a dispatch or end-to-end benchmark sends to, each started by its
//! kind with the provider settings that reach it (the stand-ins say them).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use herald_dispatchers::config::{EmailConfig, ProviderConfig, ProviderLimits, SmtpConfig};
use herald_testkit::mail_sink::{MailSink, SinkOptions};

/// Where a benchmark's sends arrive (a provider stand-in, or the SMTP sink): how many it
/// accepted, and how to forget them.
pub(crate) struct Receiver {
    pub(crate) accepted: Box<dyn Fn() -> usize + Send + Sync>,
    pub(crate) clear: Box<dyn Fn() + Send + Sync>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl Receiver {
    fn of<T: Send + Sync + 'static>(standin: T, accepted: fn(&T) -> usize, clear: fn(&T)) -> Self {
        let standin = Arc::new(standin);
        let (a, c) = (Arc::clone(&standin), Arc::clone(&standin));
        Self {
            accepted: Box::new(move || accepted(&a)),
            clear: Box::new(move || clear(&c)),
            _keep: Box::new(standin),
        }
    }
}

/// The kinds `herald bench dispatch` measures: each stand-in's, and SMTP on the development
/// sink.
pub fn bench_kinds() -> Vec<&'static str> {
    herald_standins::KINDS.iter().copied().chain(["smtp"]).collect()
}

/// A `--provider` value: one of [`bench_kinds`].
pub fn bench_kind(value: &str) -> Result<&'static str, String> {
    let kinds = bench_kinds();
    kinds.iter().copied().find(|k| *k == value).ok_or_else(|| {
        format!("no stand-in for provider kind {value:?}; one of {}", kinds.join(", "))
    })
}

/// Starts the stand-in of provider kind `kind` (answering after `latency`) and returns it
/// with the settings that reach it.
pub(crate) async fn stand_in(
    kind: &'static str,
    dir: &Path,
    limits: &ProviderLimits,
    latency: Duration,
) -> anyhow::Result<(Receiver, ProviderConfig)> {
    if kind == "smtp" {
        return smtp_sink(limits, latency);
    }
    let standin = herald_standins::start(kind).await?;
    standin.set_latency(latency);
    let mut settings = standin.settings(dir)?;
    settings["limits"] = serde_json::to_value(limits)?;
    let settings: ProviderConfig = serde_json::from_value(settings)?;
    let standin: Arc<dyn herald_standins::StandIn> = Arc::from(standin);
    Ok((Receiver::of(standin, |s| s.accepted(), |s| s.clear()), settings))
}

/// The development sink: a real SMTP server, one thread per session.
fn smtp_sink(
    limits: &ProviderLimits,
    latency: Duration,
) -> anyhow::Result<(Receiver, ProviderConfig)> {
    let options =
        SinkOptions { keep_messages: 0, record_attempts: false, ..SinkOptions::default() };
    let sink = MailSink::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), options)?;
    sink.set_delay(Some(latency));
    let smtp = SmtpConfig {
        host: sink.addr().ip().to_string(),
        port: sink.addr().port(),
        // Sessions, and so concurrent sends: the sink serves at most 64 at once.
        pool_size: u32::try_from(limits.concurrency.min(MAX_SMTP_SESSIONS)).unwrap_or(1),
        timeout_ms: limits.timeout_ms,
        ..SmtpConfig::default()
    };
    let settings = EmailConfig { smtp, ..EmailConfig::default() };
    let accepted = |s: &MailSink| usize::try_from(s.total()).unwrap_or(usize::MAX);
    Ok((Receiver::of(sink, accepted, MailSink::clear), ProviderConfig::Smtp(settings)))
}

/// SMTP sessions the bench opens: relays cap concurrent sessions, and the sink has 64
/// threads.
const MAX_SMTP_SESSIONS: usize = 32;
