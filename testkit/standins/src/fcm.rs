//! Firebase Cloud Messaging HTTP v1 and Google's OAuth2 token endpoint, as FCM answers:
//! tokens only for a correctly signed service-account JWT with the messaging scope, sends only
//! with a token it issued, `UNREGISTERED` for dead registration tokens, `QUOTA_EXCEEDED` with
//! `Retry-After`, `UNAVAILABLE`.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::jose::{self, Alg};
use crate::{StandIn, secret_file};

/// A message FCM accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FcmMessage {
    pub token: String,
    pub title: Option<String>,
    pub body: Option<String>,
    pub data: HashMap<String, String>,
    pub priority: Option<String>,
    pub collapse_key: Option<String>,
}

#[derive(Debug, Default)]
struct Behaviour {
    dead_tokens: HashSet<String>,
    /// Next sends answered 429 QUOTA_EXCEEDED with this Retry-After (seconds).
    throttled: Option<(u32, u64)>,
    /// Next sends answered 503 UNAVAILABLE.
    unavailable: u32,
    delay: Option<Duration>,
}

#[derive(Debug, Default)]
struct Inner {
    accepted: Vec<FcmMessage>,
    /// When each send request arrived (ms), answered however.
    requests: Vec<i64>,
    issued: HashSet<String>,
    token_requests: u32,
    behaviour: Behaviour,
}

#[derive(Clone)]
struct Shared {
    project_id: String,
    client_email: String,
    public_key: Arc<Vec<u8>>,
    token_uri: Arc<Mutex<String>>,
    inner: Arc<Mutex<Inner>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Clone)]
pub struct FcmStandIn {
    addr: SocketAddr,
    shared: Shared,
}

impl std::fmt::Debug for FcmStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmStandIn").field("addr", &self.addr).finish_non_exhaustive()
    }
}

fn fcm_error(status: StatusCode, grpc: &str, fcm: Option<&str>, message: &str) -> Response {
    let details = fcm.map_or(json!([]), |code| {
        json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": code}])
    });
    let body = json!({"error": {"code": status.as_u16(), "message": message, "status": grpc, "details": details}});
    (status, Json(body)).into_response()
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: String,
    assertion: String,
}

async fn token(State(shared): State<Shared>, Form(form): Form<TokenForm>) -> Response {
    let refuse = |why: &str| {
        let body = json!({"error": "invalid_grant", "error_description": why});
        (StatusCode::BAD_REQUEST, Json(body)).into_response()
    };
    if form.grant_type != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
        return refuse("unsupported grant_type");
    }
    let Ok((_, claims)) = jose::verify(&form.assertion, Alg::Rs256, &shared.public_key) else {
        return refuse("Invalid JWT Signature.");
    };
    let now = crate::now_millis() / 1000;
    let token_uri = shared.token_uri.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let valid = claims["iss"] == shared.client_email.as_str()
        && claims["aud"] == token_uri.as_str()
        && claims["scope"].as_str().is_some_and(|s| s.contains("firebase.messaging"))
        && claims["exp"].as_i64().is_some_and(|exp| exp > now);
    if !valid {
        return refuse("Invalid JWT: claims");
    }
    let mut inner = shared.lock();
    inner.token_requests += 1;
    let access = format!("ya29.standin-{}", inner.token_requests);
    inner.issued.insert(access.clone());
    Json(json!({"access_token": access, "expires_in": 3599, "token_type": "Bearer"}))
        .into_response()
}

fn parse_message(body: &Value) -> Result<FcmMessage, String> {
    let m = &body["message"];
    let token = m["token"].as_str().filter(|t| !t.is_empty()).ok_or("message.token is required")?;
    let mut data = HashMap::new();
    if let Some(map) = m["data"].as_object() {
        for (k, v) in map {
            let v = v
                .as_str()
                .ok_or_else(|| format!("Invalid value at 'message.data[{k}]': not a string"))?;
            data.insert(k.clone(), v.to_owned());
        }
    }
    let priority = m["android"]["priority"].as_str().map(str::to_owned);
    if let Some(p) = &priority
        && p != "HIGH"
        && p != "NORMAL"
    {
        return Err(format!("Invalid value at 'message.android.priority': {p}"));
    }
    Ok(FcmMessage {
        token: token.to_owned(),
        title: m["notification"]["title"].as_str().map(str::to_owned),
        body: m["notification"]["body"].as_str().map(str::to_owned),
        data,
        priority,
        collapse_key: m["android"]["collapse_key"].as_str().map(str::to_owned),
    })
}

async fn send(
    State(shared): State<Shared>,
    Path(project_action): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (project, action) = project_action;
    let delay = {
        let mut inner = shared.lock();
        inner.requests.push(crate::now_millis());
        inner.behaviour.delay
    };
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    if action != "messages:send" || project != shared.project_id {
        return fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            None,
            "Requested entity was not found.",
        );
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let mut inner = shared.lock();
    if !bearer.is_some_and(|t| inner.issued.contains(t)) {
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            None,
            "Request had invalid authentication credentials.",
        );
    }
    let message = match serde_json::from_str::<Value>(&body)
        .map_err(|e| e.to_string())
        .and_then(|v| parse_message(&v))
    {
        Ok(message) => message,
        Err(why) => {
            return fcm_error(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                Some("INVALID_ARGUMENT"),
                &why,
            );
        }
    };
    if let Some((times, retry_after)) = inner.behaviour.throttled.as_mut() {
        let retry = *retry_after;
        *times -= 1;
        if *times == 0 {
            inner.behaviour.throttled = None;
        }
        let mut response = fcm_error(
            StatusCode::TOO_MANY_REQUESTS,
            "RESOURCE_EXHAUSTED",
            Some("QUOTA_EXCEEDED"),
            "Quota exceeded.",
        );
        if let Ok(value) = retry.to_string().parse() {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        return response;
    }
    if inner.behaviour.unavailable > 0 {
        inner.behaviour.unavailable -= 1;
        return fcm_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            Some("UNAVAILABLE"),
            "The service is currently unavailable.",
        );
    }
    if inner.behaviour.dead_tokens.contains(&message.token) {
        return fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            Some("UNREGISTERED"),
            "Requested entity was not found.",
        );
    }
    let id = inner.accepted.len();
    inner.accepted.push(message);
    Json(json!({"name": format!("projects/{project}/messages/0:{id}")})).into_response()
}

/// The fields of a service-account key (the JSON file Google issues) that Google's side
/// knows: the project, the account and its key.
#[derive(Deserialize)]
struct ServiceAccount {
    project_id: String,
    client_email: String,
    private_key: String,
}

impl FcmStandIn {
    /// Serves FCM for the project of `service_account` (its JSON key), on a free port.
    pub async fn start(service_account: &str) -> anyhow::Result<Self> {
        let account: ServiceAccount = serde_json::from_str(service_account)?;
        let public_key = jose::public_key(Alg::Rs256, &account.private_key)?;
        let shared = Shared {
            project_id: account.project_id,
            client_email: account.client_email,
            public_key: Arc::new(public_key),
            token_uri: Arc::default(),
            inner: Arc::default(),
        };
        let app = Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project}/{action}", post(send))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        *shared.token_uri.lock().unwrap_or_else(|p| p.into_inner()) =
            format!("http://{addr}/token");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, shared })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Where the service-account key must point its `token_uri`.
    pub fn token_uri(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn accepted(&self) -> Vec<FcmMessage> {
        self.shared.lock().accepted.clone()
    }

    pub fn accepted_count(&self) -> usize {
        self.shared.lock().accepted.len()
    }

    /// Forgets what was accepted and requested (a benchmark's next round).
    pub fn clear(&self) {
        let mut inner = self.shared.lock();
        inner.accepted.clear();
        inner.requests.clear();
    }

    /// When each send request arrived (ms since the epoch).
    pub fn requests(&self) -> Vec<i64> {
        self.shared.lock().requests.clone()
    }

    pub fn token_requests(&self) -> u32 {
        self.shared.lock().token_requests
    }

    /// `token` is answered `UNREGISTERED` from now on.
    pub fn unregister(&self, token: &str) {
        self.shared.lock().behaviour.dead_tokens.insert(token.to_owned());
    }

    /// The next `times` sends get 429 `QUOTA_EXCEEDED` with `Retry-After: retry_after_secs`.
    pub fn throttle(&self, times: u32, retry_after_secs: u64) {
        self.shared.lock().behaviour.throttled = (times > 0).then_some((times, retry_after_secs));
    }

    /// The next `times` sends get 503 `UNAVAILABLE`.
    pub fn fail_unavailable(&self, times: u32) {
        self.shared.lock().behaviour.unavailable = times;
    }

    /// Every send takes this long before it is answered.
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.shared.lock().behaviour.delay = delay;
    }
}

/// The throwaway service account of a fake Firebase project (ring cannot generate RSA keys).
const SERVICE_ACCOUNT: &str =
    include_str!("../../../dispatchers/tests/fixtures/fcm-service-account.json");

impl FcmStandIn {
    /// A Firebase project of its own (`StandIn`).
    pub async fn start_account() -> anyhow::Result<Self> {
        Self::start(SERVICE_ACCOUNT).await
    }
}

impl StandIn for FcmStandIn {
    fn accepted(&self) -> usize {
        self.accepted_count()
    }
    fn clear(&self) {
        FcmStandIn::clear(self);
    }
    fn set_latency(&self, latency: Duration) {
        self.set_delay(Some(latency));
    }
    fn throttle_once(&self) {
        self.throttle(1, 2);
    }
    fn fail_once(&self) {
        self.fail_unavailable(1);
    }
    fn kill(&self, target: &str) {
        self.unregister(target);
    }

    fn settings(&self, secrets: &std::path::Path) -> anyhow::Result<Value> {
        let mut key: Value = serde_json::from_str(SERVICE_ACCOUNT)?;
        key["token_uri"] = self.token_uri().into();
        Ok(json!({
            "kind": "fcm",
            "credentials": secret_file(secrets, "fcm-service-account.json", &key.to_string())?,
            "base_url": self.base_url(),
        }))
    }
}
