//! Local stand-ins for third-party provider APIs, for tests and benchmarks. Each speaks its
//! provider's real request and answer shapes, checks what the provider checks (credentials,
//! required fields), and can be told to fail the way the provider does.

pub mod apns;
mod by_kind;
pub mod fcm;
mod gsm;
mod jose;
pub mod jpush;
pub mod pushy;
pub mod sendgrid;
pub mod twilio;
pub mod vonage;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;

pub use by_kind::{KINDS, start};

/// How the next send is to fail, if at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The provider's rate limit (429 or its equivalent).
    Throttled,
    /// The provider's outage (5xx or its equivalent).
    Failing,
    /// The target is gone (unregistered token, unsubscribed number).
    Dead,
}

#[derive(Debug)]
struct State<T> {
    accepted: Vec<T>,
    requests: usize,
    throttled: u32,
    failing: u32,
    dead: HashSet<String>,
    latency: Duration,
}

/// What a stand-in accepted, and the faults it was told to inject.
#[derive(Debug)]
pub struct Recorder<T> {
    state: Arc<Mutex<State<T>>>,
}

impl<T> Clone for Recorder<T> {
    fn clone(&self) -> Self {
        Self { state: Arc::clone(&self.state) }
    }
}

impl<T> Default for Recorder<T> {
    fn default() -> Self {
        let state = State {
            accepted: Vec::new(),
            requests: 0,
            throttled: 0,
            failing: 0,
            dead: HashSet::new(),
            latency: Duration::ZERO,
        };
        Self { state: Arc::new(Mutex::new(state)) }
    }
}

impl<T: Clone> Recorder<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What was accepted, in order.
    pub fn accepted(&self) -> Vec<T> {
        self.lock().accepted.clone()
    }

    /// Send requests received, answered however.
    pub fn requests(&self) -> usize {
        self.lock().requests
    }

    /// The next `times` sends are refused by the rate limit.
    pub fn throttle(&self, times: u32) {
        self.lock().throttled = times;
    }

    /// The next `times` sends meet an outage.
    pub fn fail(&self, times: u32) {
        self.lock().failing = times;
    }

    /// `target` is gone from now on.
    pub fn unregister(&self, target: &str) {
        self.lock().dead.insert(target.to_owned());
    }

    /// Every request is answered after `latency` (a provider's processing time).
    pub fn set_latency(&self, latency: Duration) {
        self.lock().latency = latency;
    }

    /// Forgets what was accepted (a benchmark's long runs).
    pub fn clear(&self) {
        self.lock().accepted.clear();
    }

    /// How many sends were accepted.
    pub fn accepted_count(&self) -> usize {
        self.lock().accepted.len()
    }

    /// Counts a request and waits the configured latency; call first in every send handler.
    pub(crate) async fn arrived(&self) {
        let latency = {
            let mut state = self.lock();
            state.requests += 1;
            state.latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// The fault this send to `target` meets, consuming one injected fault.
    pub(crate) fn fault(&self, target: &str) -> Option<Fault> {
        let mut state = self.lock();
        if state.throttled > 0 {
            state.throttled -= 1;
            return Some(Fault::Throttled);
        }
        if state.failing > 0 {
            state.failing -= 1;
            return Some(Fault::Failing);
        }
        state.dead.contains(target).then_some(Fault::Dead)
    }

    /// Records an accepted send; returns its sequence number.
    pub(crate) fn accept(&self, item: T) -> usize {
        let mut state = self.lock();
        state.accepted.push(item);
        state.accepted.len()
    }
}

/// Serves `app` on a free local port.
pub(crate) async fn serve(app: axum::Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Whether the request carries HTTP basic credentials `user:password`.
pub(crate) fn basic_auth_is(headers: &HeaderMap, user: &str, password: &str) -> bool {
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v == expected)
}

/// Milliseconds since the Unix epoch, as the providers' clocks read them.
pub(crate) fn now_millis() -> i64 {
    let since = std::time::UNIX_EPOCH.elapsed().unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// The client a stand-in calls back with (status callbacks, event webhooks), on the same TLS
/// provider as Herald (reqwest is built without one of its own).
pub(crate) fn http_client() -> reqwest::Client {
    // Err only means another caller installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A running stand-in with an account of its own, answering with the provider settings
/// that reach it: the `[dispatch.providers.<name>]` table an operator writes
/// (docs/providers.md), as JSON. The dispatchers' wire tests build their providers from it.
pub trait StandIn: Send + Sync {
    /// Sends accepted so far.
    fn accepted(&self) -> usize;
    /// Forgets what was accepted (a benchmark's next round).
    fn clear(&self);
    /// Every send is answered after `latency` (the provider's processing time).
    fn set_latency(&self, latency: Duration);
    /// The next send meets the provider's rate limit (429 or its equivalent).
    fn throttle_once(&self);
    /// The next send meets the provider's outage (5xx or its equivalent).
    fn fail_once(&self);
    /// `target`, as the provider receives it, is gone from now on.
    fn kill(&self, target: &str);
    /// The provider settings that reach this stand-in, its secrets written as files under
    /// `secrets`.
    fn settings(&self, secrets: &std::path::Path) -> anyhow::Result<serde_json::Value>;
}

/// Writes `value` to the file `name` under `dir`; the secret source naming it.
pub(crate) fn secret_file(
    dir: &std::path::Path,
    name: &str,
    value: &str,
) -> anyhow::Result<serde_json::Value> {
    let path = dir.join(name);
    std::fs::write(&path, value)?;
    Ok(serde_json::json!({ "file": path.display().to_string() }))
}

/// The `Account` methods of a stand-in that keeps its sends in a `Recorder`.
macro_rules! recorded_stand_in {
    () => {
        fn accepted(&self) -> usize {
            self.recorder.accepted_count()
        }
        fn clear(&self) {
            self.recorder.clear();
        }
        fn set_latency(&self, latency: std::time::Duration) {
            self.recorder.set_latency(latency);
        }
        fn throttle_once(&self) {
            self.recorder.throttle(1);
        }
        fn fail_once(&self) {
            self.recorder.fail(1);
        }
        fn kill(&self, target: &str) {
            self.recorder.unregister(target);
        }
    };
}
pub(crate) use recorded_stand_in;
