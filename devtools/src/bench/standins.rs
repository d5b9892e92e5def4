//! The provider stand-ins a dispatch or end-to-end benchmark sends to, each started with the
//! provider settings that reach it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use herald_dispatchers::config::{
    ApnsAuth, ApnsSettings, DEFAULT_APNS_CONNECTIONS, EmailConfig, FcmSettings, JpushSettings,
    ProviderConfig, ProviderLimits, PushySettings, SendgridSettings, SmsOptions, SmtpConfig,
    TwilioSettings, Unsubscribe, VonageSettings,
};
use herald_runtime::SecretSource;
use herald_standins::apns::ApnsStandIn;
use herald_standins::fcm::FcmStandIn;
use herald_standins::jpush::JpushStandIn;
use herald_standins::pushy::PushyStandIn;
use herald_standins::sendgrid::SendgridStandIn;
use herald_standins::twilio::TwilioStandIn;
use herald_standins::vonage::VonageStandIn;
use herald_testkit::mail_sink::{MailSink, SinkOptions};

use super::dispatch::BenchProvider;

/// A running stand-in: how many sends it accepted, and how to forget them.
pub(crate) struct StandIn {
    pub(crate) accepted: Box<dyn Fn() -> usize + Send + Sync>,
    pub(crate) clear: Box<dyn Fn() + Send + Sync>,
    _keep: Box<dyn std::any::Any + Send + Sync>,
}

impl StandIn {
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

fn secret(dir: &Path, name: &str, value: &str) -> anyhow::Result<SecretSource> {
    let path = dir.join(name);
    std::fs::write(&path, value)?;
    Ok(SecretSource::File(path.display().to_string()))
}

/// A fresh P-256 key in Apple's .p8 (PKCS#8 PEM) form.
/// The throwaway service account of a fake Firebase project that the tests use too: ring
/// cannot generate RSA keys, and the stand-in only checks the token exchange's signature.
const FCM_SERVICE_ACCOUNT: &str =
    include_str!("../../../dispatchers/tests/fixtures/fcm-service-account.json");

fn p8_key() -> anyhow::Result<String> {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rng,
    )
    .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
    let encoded = base64::engine::general_purpose::STANDARD.encode(pkcs8.as_ref());
    let lines: Vec<&str> =
        encoded.as_bytes().chunks(64).filter_map(|c| std::str::from_utf8(c).ok()).collect();
    Ok(format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", lines.join("\n")))
}

/// Starts the stand-in of `provider` and returns it with the provider's settings.
pub(crate) async fn stand_in(
    provider: BenchProvider,
    dir: &Path,
    limits: ProviderLimits,
    latency: Duration,
) -> anyhow::Result<(StandIn, ProviderConfig)> {
    Ok(match provider {
        BenchProvider::Apns => {
            let key = p8_key()?;
            let s = ApnsStandIn::start(&key, "TEAMBENCH1", "KEYBENCH01", &["com.example.bench"])
                .await?;
            s.set_latency(latency);
            let settings = ApnsSettings {
                auth: ApnsAuth::Token {
                    team_id: "TEAMBENCH1".into(),
                    key_id: "KEYBENCH01".into(),
                    key: secret(dir, "apns.p8", &key)?,
                },
                topic: "com.example.bench".into(),
                topics: BTreeMap::new(),
                base_url: Some(s.base_url()),
                connections: DEFAULT_APNS_CONNECTIONS,
                limits,
            };
            (
                StandIn::of(s, ApnsStandIn::accepted_count, ApnsStandIn::clear),
                ProviderConfig::Apns(settings),
            )
        }
        BenchProvider::Fcm => {
            let s = FcmStandIn::start(FCM_SERVICE_ACCOUNT).await?;
            s.set_delay(Some(latency));
            let mut account: serde_json::Value = serde_json::from_str(FCM_SERVICE_ACCOUNT)?;
            account["token_uri"] = s.token_uri().into();
            let settings = FcmSettings {
                credentials: secret(dir, "fcm.json", &account.to_string())?,
                base_url: Some(s.base_url()),
                limits,
            };
            (StandIn::of(s, |s| s.accepted_count(), |s| s.clear()), ProviderConfig::Fcm(settings))
        }
        BenchProvider::Jpush => {
            let s = JpushStandIn::start("bench-app-key", "bench-master-secret").await?;
            s.set_latency(latency);
            let settings = JpushSettings {
                app_key: "bench-app-key".into(),
                master_secret: secret(dir, "jpush", "bench-master-secret")?,
                apns_production: false,
                time_to_live_secs: 3600,
                base_url: Some(s.base_url()),
                limits,
            };
            (StandIn::of(s, |s| s.accepted_count(), |s| s.clear()), ProviderConfig::Jpush(settings))
        }
        BenchProvider::Pushy => {
            let s = PushyStandIn::start("bench-pushy-key").await?;
            s.set_latency(latency);
            let settings = PushySettings {
                api_key: secret(dir, "pushy", "bench-pushy-key")?,
                time_to_live_secs: 3600,
                base_url: Some(s.base_url()),
                limits,
            };
            (StandIn::of(s, |s| s.accepted_count(), |s| s.clear()), ProviderConfig::Pushy(settings))
        }
        BenchProvider::Twilio => {
            let sid = "ACbench0000000000000000000000000000";
            let s = TwilioStandIn::start(sid, "bench-token").await?;
            s.set_latency(latency);
            let settings = TwilioSettings {
                account_sid: sid.into(),
                auth_token: secret(dir, "twilio", "bench-token")?,
                messaging_service_sid: None,
                status_callback: None,
                sms: SmsOptions { from: "+15005550006".into(), max_segments: 4 },
                base_url: Some(s.base_url()),
                limits,
            };
            (
                StandIn::of(s, |s| s.accepted_count(), |s| s.clear()),
                ProviderConfig::Twilio(settings),
            )
        }
        BenchProvider::Vonage => {
            let s = VonageStandIn::start("bench-key", "bench-secret").await?;
            s.set_latency(latency);
            let settings = VonageSettings {
                api_key: "bench-key".into(),
                api_secret: secret(dir, "vonage", "bench-secret")?,
                sms: SmsOptions { from: "Herald".into(), max_segments: 4 },
                base_url: Some(s.base_url()),
                limits,
            };
            (
                StandIn::of(s, |s| s.accepted_count(), |s| s.clear()),
                ProviderConfig::Vonage(settings),
            )
        }
        BenchProvider::Sendgrid => {
            let s = SendgridStandIn::start("SG.bench").await?;
            s.set_latency(latency);
            let settings = SendgridSettings {
                api_key: secret(dir, "sendgrid", "SG.bench")?,
                default_from: "Herald <noreply@example.com>".into(),
                unsubscribe: Unsubscribe::default(),
                base_url: Some(s.base_url()),
                limits,
            };
            (
                StandIn::of(s, |s| s.accepted_count(), |s| s.clear()),
                ProviderConfig::Sendgrid(settings),
            )
        }
        BenchProvider::Smtp => {
            // The development sink: a real SMTP server, one thread per session.
            let options =
                SinkOptions { keep_messages: 0, record_attempts: false, ..SinkOptions::default() };
            let s = MailSink::start_with(SocketAddr::from(([127, 0, 0, 1], 0)), options)?;
            s.set_delay(Some(latency));
            let smtp = SmtpConfig {
                host: s.addr().ip().to_string(),
                port: s.addr().port(),
                // Sessions, and so concurrent sends: the sink serves at most 64 at once.
                pool_size: u32::try_from(limits.concurrency.min(MAX_SMTP_SESSIONS)).unwrap_or(1),
                timeout_ms: limits.timeout_ms,
                ..SmtpConfig::default()
            };
            let settings = EmailConfig { smtp, ..EmailConfig::default() };
            (
                StandIn::of(
                    s,
                    |s| usize::try_from(s.total()).unwrap_or(usize::MAX),
                    MailSink::clear,
                ),
                ProviderConfig::Smtp(settings),
            )
        }
    })
}

/// SMTP sessions the bench opens: relays cap concurrent sessions, and the sink has 64
/// threads.
const MAX_SMTP_SESSIONS: usize = 32;
