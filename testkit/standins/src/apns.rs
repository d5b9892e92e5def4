//! Apple Push Notification service as APNs answers, over HTTP/2 only: provider tokens checked
//! (ES256 signature with the team's key, key id, team, issued within the hour), the request
//! headers validated the way Apple does (topic, push type, priority, expiration, collapse id,
//! apns-id), 410 `Unregistered` for dead device tokens, 429 `TooManyRequests` and
//! 503 `ServiceUnavailable` on demand. Answers carry Apple's `{"reason": ...}` bodies.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use crate::jose::{self, Alg};
use crate::{StandIn, secret_file};

/// Apple's limit for alert notifications.
const MAX_PAYLOAD: usize = 4096;
/// Apple refuses provider tokens issued more than an hour ago.
const TOKEN_MAX_AGE_SECS: i64 = 3600;

/// A notification APNs accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApnsNotification {
    pub device_token: String,
    pub topic: String,
    pub push_type: String,
    pub priority: Option<String>,
    pub expiration: Option<String>,
    pub collapse_id: Option<String>,
    pub apns_id: Option<String>,
    pub payload: Value,
}

#[derive(Debug, Default)]
struct Inner {
    accepted: Vec<ApnsNotification>,
    /// Every request, answered however: its HTTP version.
    versions: Vec<Version>,
    /// The client end of every connection a request came on.
    peers: HashSet<SocketAddr>,
    /// Distinct provider tokens that were accepted.
    provider_tokens: HashSet<String>,
    /// Provider tokens whose signature, key id and team checked out, with their `iat`: a
    /// client signs one token for up to an hour of sends, so its signature is verified once
    /// (as a server answering thousands of requests a second must), its age on every send.
    verified_tokens: HashMap<String, i64>,
    dead_tokens: HashSet<String>,
    throttled: u32,
    unavailable: u32,
    latency: std::time::Duration,
}

#[derive(Clone)]
struct Shared {
    team_id: String,
    key_id: String,
    public_key: Arc<Vec<u8>>,
    topics: Arc<HashSet<String>>,
    inner: Arc<Mutex<Inner>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone)]
pub struct ApnsStandIn {
    addr: SocketAddr,
    shared: Shared,
    /// The team's key, when the stand-in made it (`start_account`).
    p8: Option<String>,
}

impl std::fmt::Debug for ApnsStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApnsStandIn").field("addr", &self.addr).finish_non_exhaustive()
    }
}

fn refuse(status: StatusCode, reason: &str) -> Response {
    (status, axum::Json(json!({"reason": reason}))).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn is_uuid(value: &str) -> bool {
    let groups: Vec<&str> = value.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Verified provider tokens kept at most; past it the memory starts over.
const VERIFIED_TOKENS_KEPT: usize = 1024;

/// The provider-token check: `None` when the token is good, else Apple's reason.
fn check_provider_token(shared: &Shared, headers: &HeaderMap) -> Option<&'static str> {
    let Some(token) = header(headers, "authorization").and_then(|v| v.strip_prefix("bearer "))
    else {
        return Some("MissingProviderToken");
    };
    let known = shared.lock().verified_tokens.get(token).copied();
    let issued_at = match known {
        Some(iat) => iat,
        None => {
            let iat = match verified_issued_at(shared, token) {
                Ok(iat) => iat,
                Err(reason) => return Some(reason),
            };
            let mut inner = shared.lock();
            if inner.verified_tokens.len() >= VERIFIED_TOKENS_KEPT {
                inner.verified_tokens.clear();
            }
            inner.verified_tokens.insert(token.to_owned(), iat);
            iat
        }
    };
    let now = crate::now_millis() / 1000;
    if issued_at > now + 60 {
        Some("InvalidProviderToken")
    } else if now - issued_at > TOKEN_MAX_AGE_SECS {
        Some("ExpiredProviderToken")
    } else {
        None
    }
}

/// The `iat` of a token signed by the team's key, or `InvalidProviderToken`.
fn verified_issued_at(shared: &Shared, token: &str) -> Result<i64, &'static str> {
    let Ok((jwt_header, claims)) = jose::verify(token, Alg::Es256, &shared.public_key) else {
        return Err("InvalidProviderToken");
    };
    if jwt_header["kid"] != shared.key_id.as_str() || claims["iss"] != shared.team_id.as_str() {
        return Err("InvalidProviderToken");
    }
    claims["iat"].as_i64().ok_or("InvalidProviderToken")
}

/// Apple's header checks, in the order its documentation lists the reasons.
fn check_headers(shared: &Shared, headers: &HeaderMap) -> Result<(), &'static str> {
    let topic = header(headers, "apns-topic").ok_or("MissingTopic")?;
    if !shared.topics.contains(topic) {
        return Err("TopicDisallowed");
    }
    if !matches!(
        header(headers, "apns-push-type"),
        Some("alert" | "background" | "voip" | "complication" | "fileprovider" | "mdm")
    ) {
        return Err("InvalidPushType");
    }
    if header(headers, "apns-priority").is_some_and(|p| !matches!(p, "1" | "5" | "10")) {
        return Err("BadPriority");
    }
    if header(headers, "apns-expiration").is_some_and(|e| e.parse::<i64>().is_err()) {
        return Err("BadExpirationDate");
    }
    if header(headers, "apns-collapse-id").is_some_and(|c| c.len() > 64) {
        return Err("BadCollapseId");
    }
    if header(headers, "apns-id").is_some_and(|id| !is_uuid(id)) {
        return Err("BadMessageId");
    }
    Ok(())
}

async fn send(
    State(shared): State<Shared>,
    Path(device_token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = {
        let mut inner = shared.lock();
        inner.versions.push(version);
        inner.peers.insert(peer);
        inner.latency
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if version != Version::HTTP_2 {
        // APNs closes HTTP/1.1 connections; a status is the nearest a handler can say.
        return refuse(StatusCode::HTTP_VERSION_NOT_SUPPORTED, "HTTP/2 required");
    }
    if let Some(reason) = check_provider_token(&shared, &headers) {
        return refuse(StatusCode::FORBIDDEN, reason);
    }
    if let Err(reason) = check_headers(&shared, &headers) {
        return refuse(StatusCode::BAD_REQUEST, reason);
    }
    if device_token.len() != 64 || !device_token.chars().all(|c| c.is_ascii_hexdigit()) {
        return refuse(StatusCode::BAD_REQUEST, "BadDeviceToken");
    }
    if body.is_empty() {
        return refuse(StatusCode::BAD_REQUEST, "PayloadEmpty");
    }
    if body.len() > MAX_PAYLOAD {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge");
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "BadPayload");
    };
    if !payload["aps"].is_object() {
        return refuse(StatusCode::BAD_REQUEST, "BadPayload");
    }
    let token = header(&headers, "authorization").unwrap_or_default().to_owned();
    let mut inner = shared.lock();
    if inner.throttled > 0 {
        inner.throttled -= 1;
        return refuse(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests");
    }
    if inner.unavailable > 0 {
        inner.unavailable -= 1;
        return refuse(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable");
    }
    if inner.dead_tokens.contains(&device_token) {
        let body = json!({"reason": "Unregistered", "timestamp": crate::now_millis()});
        return (StatusCode::GONE, axum::Json(body)).into_response();
    }
    inner.provider_tokens.insert(token);
    let apns_id = header(&headers, "apns-id").map_or_else(
        || format!("00000000-0000-4000-8000-{:012X}", inner.accepted.len()),
        str::to_owned,
    );
    inner.accepted.push(ApnsNotification {
        device_token,
        topic: header(&headers, "apns-topic").unwrap_or_default().to_owned(),
        push_type: header(&headers, "apns-push-type").unwrap_or_default().to_owned(),
        priority: header(&headers, "apns-priority").map(str::to_owned),
        expiration: header(&headers, "apns-expiration").map(str::to_owned),
        collapse_id: header(&headers, "apns-collapse-id").map(str::to_owned),
        apns_id: header(&headers, "apns-id").map(str::to_owned),
        payload,
    });
    (StatusCode::OK, [("apns-id", apns_id)]).into_response()
}

impl ApnsStandIn {
    /// Serves APNs for team `team_id`, whose key `key_id` is the .p8 PEM `p8`, accepting
    /// notifications for the bundle ids in `topics`.
    pub async fn start(
        p8: &str,
        team_id: &str,
        key_id: &str,
        topics: &[&str],
    ) -> anyhow::Result<Self> {
        let public_key = jose::public_key(Alg::Es256, p8)?;
        let shared = Shared {
            team_id: team_id.to_owned(),
            key_id: key_id.to_owned(),
            public_key: Arc::new(public_key),
            topics: Arc::new(topics.iter().map(|t| (*t).to_owned()).collect()),
            inner: Arc::default(),
        };
        let app = Router::new().route("/3/device/{token}", post(send)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, shared, p8: None })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn accepted(&self) -> Vec<ApnsNotification> {
        self.shared.lock().accepted.clone()
    }

    /// The HTTP version of every request received.
    pub fn versions(&self) -> Vec<Version> {
        self.shared.lock().versions.clone()
    }

    /// How many connections requests came on.
    pub fn connections_seen(&self) -> usize {
        self.shared.lock().peers.len()
    }

    /// How many distinct provider tokens signed the accepted notifications.
    pub fn distinct_provider_tokens(&self) -> usize {
        self.shared.lock().provider_tokens.len()
    }

    /// `device_token` is answered 410 `Unregistered` from now on.
    pub fn unregister(&self, device_token: &str) {
        self.shared.lock().dead_tokens.insert(device_token.to_owned());
    }

    /// The next `times` sends get 429 `TooManyRequests`.
    pub fn throttle(&self, times: u32) {
        self.shared.lock().throttled = times;
    }

    /// Every request is answered after `latency`.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.lock().latency = latency;
    }

    /// How many notifications were accepted.
    pub fn accepted_count(&self) -> usize {
        self.shared.lock().accepted.len()
    }

    /// Forgets what was accepted and how requests arrived (a benchmark's long runs).
    pub fn clear(&self) {
        let mut inner = self.shared.lock();
        inner.accepted.clear();
        inner.versions.clear();
        inner.peers.clear();
    }

    /// The next `times` sends get 503 `ServiceUnavailable`.
    pub fn fail_unavailable(&self, times: u32) {
        self.shared.lock().unavailable = times;
    }
}

/// The team, key and app of `start_account`'s account.
const TEAM_ID: &str = "TEAMSTANDN";
const KEY_ID: &str = "KEYSTANDIN";
const BUNDLE_ID: &str = "com.example.standin";

impl ApnsStandIn {
    /// A team of its own, with a fresh .p8 key (`StandIn`).
    pub async fn start_account() -> anyhow::Result<Self> {
        let p8 = jose::new_p8_key()?;
        let standin = Self::start(&p8, TEAM_ID, KEY_ID, &[BUNDLE_ID]).await?;
        Ok(Self { p8: Some(p8), ..standin })
    }
}

impl StandIn for ApnsStandIn {
    fn accepted(&self) -> usize {
        self.accepted_count()
    }
    fn clear(&self) {
        ApnsStandIn::clear(self);
    }
    fn set_latency(&self, latency: std::time::Duration) {
        ApnsStandIn::set_latency(self, latency);
    }
    fn throttle_once(&self) {
        self.throttle(1);
    }
    fn fail_once(&self) {
        self.fail_unavailable(1);
    }
    fn kill(&self, target: &str) {
        self.unregister(target);
    }

    fn settings(&self, secrets: &std::path::Path) -> anyhow::Result<Value> {
        let p8 = self.p8.as_deref();
        let p8 = p8.ok_or_else(|| anyhow::anyhow!("started with a key of the caller's"))?;
        Ok(json!({
            "kind": "apns",
            "auth": {"token": {
                "team_id": TEAM_ID,
                "key_id": KEY_ID,
                "key": secret_file(secrets, "apns-AuthKey.p8", p8)?,
            }},
            "topic": BUNDLE_ID,
            "base_url": self.base_url(),
        }))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const P8: &str = include_str!("../../../dispatchers/tests/fixtures/apns-AuthKey_TEST123456.p8");

    fn apple() -> Shared {
        Shared {
            team_id: "TEAM000001".into(),
            key_id: "TEST123456".into(),
            public_key: Arc::new(jose::public_key(Alg::Es256, P8).unwrap()),
            topics: Arc::default(),
            inner: Arc::default(),
        }
    }

    fn bearer(kid: &str, iat: i64) -> HeaderMap {
        let header = json!({"alg": "ES256", "kid": kid});
        let token = jose::sign_es256(P8, &header, &json!({"iss": "TEAM000001", "iat": iat}));
        let mut headers = HeaderMap::new();
        headers.insert("authorization", format!("bearer {token}").parse().unwrap());
        headers
    }

    #[test]
    fn a_provider_token_is_verified_once_and_its_age_checked_on_every_send() {
        let apple = apple();
        let now = crate::now_millis() / 1000;
        let fresh = bearer("TEST123456", now);
        assert_eq!(check_provider_token(&apple, &fresh), None);
        assert_eq!(check_provider_token(&apple, &fresh), None);
        assert_eq!(apple.lock().verified_tokens.len(), 1);

        let old = bearer("TEST123456", now - TOKEN_MAX_AGE_SECS - 5);
        assert_eq!(check_provider_token(&apple, &old), Some("ExpiredProviderToken"));
        // Known now, and still too old.
        assert_eq!(apple.lock().verified_tokens.len(), 2);
        assert_eq!(check_provider_token(&apple, &old), Some("ExpiredProviderToken"));

        assert_eq!(
            check_provider_token(&apple, &bearer("OTHERKEY00", now)),
            Some("InvalidProviderToken")
        );
        let mut forged = fresh.clone();
        let tampered = format!("{}A", header(&fresh, "authorization").unwrap());
        forged.insert("authorization", tampered.parse().unwrap());
        assert_eq!(check_provider_token(&apple, &forged), Some("InvalidProviderToken"));
        assert_eq!(check_provider_token(&apple, &HeaderMap::new()), Some("MissingProviderToken"));
        assert_eq!(apple.lock().verified_tokens.len(), 2, "refused tokens are not remembered");
    }
}
