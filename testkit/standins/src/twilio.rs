//! Twilio's Messages API as Twilio answers: basic auth with the account SID and auth token
//! (20003), form fields checked (21211 invalid 'To', 21602 no body, 21603 no sender, 21617
//! over 1600 characters), 21610 for numbers that replied STOP, 20429 throttling with
//! `Retry-After`, 500 outages; 201 with the message resource when queued. A message with a
//! `StatusCallback` gets Twilio's status callbacks (`sent`, then `delivered`, or
//! `undelivered` with an error code), form-encoded and signed with the auth token in
//! `X-Twilio-Signature`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::{Value, json};

use super::{Fault, Recorder, basic_auth_is, serve};
use crate::{StandIn, recorded_stand_in, secret_file};

/// An SMS Twilio queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioMessage {
    pub sid: String,
    pub to: String,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub body: String,
    pub status_callback: Option<String>,
}

/// How status callbacks go out.
#[derive(Debug, Default)]
struct Callbacks {
    /// Where to connect instead of the callback URL's host (a proxy in front of ingest);
    /// the signature still covers the URL as given.
    reach: Option<String>,
    /// Numbers whose messages end `undelivered`, with Twilio's error code.
    undelivered: HashMap<String, u32>,
}

#[derive(Clone)]
struct Account {
    sid: String,
    token: String,
    recorder: Recorder<TwilioMessage>,
    callbacks: Arc<Mutex<Callbacks>>,
    http: reqwest::Client,
}

#[derive(Debug)]
pub struct TwilioStandIn {
    addr: SocketAddr,
    recorder: Recorder<TwilioMessage>,
    callbacks: Arc<Mutex<Callbacks>>,
}

impl Deref for TwilioStandIn {
    type Target = Recorder<TwilioMessage>;
    fn deref(&self) -> &Self::Target {
        &self.recorder
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status.as_u16(),
    });
    (status, Json(body)).into_response()
}

async fn create_message(
    State(account): State<Account>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    account.recorder.arrived().await;
    if sid != account.sid || !basic_auth_is(&headers, &account.sid, &account.token) {
        return error(StatusCode::UNAUTHORIZED, 20003, "Authenticate");
    }
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let to = field("To").unwrap_or_default();
    let (from, service) = (field("From"), field("MessagingServiceSid"));
    let body = field("Body").unwrap_or_default();
    if !is_e164(&to) {
        return error(
            StatusCode::BAD_REQUEST,
            21211,
            &format!("The 'To' number {to} is not a valid phone number."),
        );
    }
    if from.is_none() && service.is_none() {
        return error(StatusCode::BAD_REQUEST, 21603, "A 'From' phone number is required.");
    }
    if body.is_empty() {
        return error(StatusCode::BAD_REQUEST, 21602, "Message body is required.");
    }
    if body.chars().count() > 1600 {
        return error(
            StatusCode::BAD_REQUEST,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    match account.recorder.fault(&to) {
        Some(Fault::Throttled) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, 20429, "Too Many Requests");
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        }
        Some(Fault::Failing) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                20500,
                "An internal server error has occurred",
            );
        }
        Some(Fault::Dead) => {
            return error(
                StatusCode::BAD_REQUEST,
                21610,
                "Attempt to send to unsubscribed recipient",
            );
        }
        None => {}
    }
    let message = TwilioMessage {
        sid: String::new(),
        to: to.clone(),
        from: from.clone(),
        messaging_service_sid: service,
        body: body.clone(),
        status_callback: field("StatusCallback"),
    };
    let n = account.recorder.accept(message);
    let sid = format!("SM{n:032x}");
    if let Some(url) = field("StatusCallback") {
        let sender = from.clone().or(field("MessagingServiceSid")).unwrap_or_default();
        tokio::spawn(report_status(account.clone(), url, sid.clone(), to.clone(), sender));
    }
    let resource = json!({
        "sid": sid, "account_sid": account.sid, "to": to, "from": from, "body": body,
        "status": "queued", "direction": "outbound-api", "num_segments": "1",
        "uri": format!("/2010-04-01/Accounts/{}/Messages/{sid}.json", account.sid),
    });
    (StatusCode::CREATED, Json(resource)).into_response()
}

/// Twilio's request signature: base64 of HMAC-SHA1 under the auth token over the URL and
/// each parameter's name and value, sorted by name.
fn signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    use base64::Engine as _;
    let mut sorted = params.to_vec();
    sorted.sort();
    let signed: String = sorted.iter().fold(url.to_owned(), |acc, (k, v)| acc + k + v);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(ring::hmac::sign(&key, signed.as_bytes()))
}

/// Posts `sent`, then the final status, to the message's status callback, as Twilio does.
async fn report_status(account: Account, url: String, sid: String, to: String, from: String) {
    let (reach, failure) = match account.callbacks.lock() {
        Ok(c) => (c.reach.clone(), c.undelivered.get(&to).copied()),
        Err(_) => return,
    };
    let target = match (&reach, url.find("/v1/")) {
        (Some(base), Some(path)) => format!("{}{}", base.trim_end_matches('/'), &url[path..]),
        _ => url.clone(),
    };
    let last = match failure {
        Some(code) => ("undelivered", Some(code)),
        None => ("delivered", None),
    };
    for (status, error_code) in [("sent", None), last] {
        let mut params: Vec<(String, String)> = [
            ("AccountSid", account.sid.as_str()),
            ("ApiVersion", "2010-04-01"),
            ("From", from.as_str()),
            ("MessageSid", sid.as_str()),
            ("MessageStatus", status),
            ("SmsSid", sid.as_str()),
            ("SmsStatus", status),
            ("To", to.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        if let Some(code) = error_code {
            params.push(("ErrorCode".into(), code.to_string()));
        }
        let signed = signature(&account.token, &url, &params);
        let sent = account
            .http
            .post(&target)
            .header("X-Twilio-Signature", signed)
            .form(&params)
            .send()
            .await;
        if let Err(e) = sent {
            tracing::warn!(error = %e, "status callback not delivered");
        }
    }
}

impl TwilioStandIn {
    /// Connect status callbacks to `base` (scheme and authority), whatever host their URL
    /// names.
    pub fn reach_callbacks_at(&self, base: &str) {
        if let Ok(mut callbacks) = self.callbacks.lock() {
            callbacks.reach = Some(base.to_owned());
        }
    }

    /// Messages to `to` end `undelivered` with `error_code` (30003: unreachable handset).
    pub fn undeliverable(&self, to: &str, error_code: u32) {
        if let Ok(mut callbacks) = self.callbacks.lock() {
            callbacks.undelivered.insert(to.to_owned(), error_code);
        }
    }

    /// Serves the account `account_sid` whose auth token is `auth_token`.
    pub async fn start(account_sid: &str, auth_token: &str) -> anyhow::Result<Self> {
        let recorder = Recorder::default();
        let callbacks = Arc::new(Mutex::new(Callbacks::default()));
        let account = Account {
            sid: account_sid.to_owned(),
            token: auth_token.to_owned(),
            recorder: recorder.clone(),
            callbacks: Arc::clone(&callbacks),
            http: crate::http_client(),
        };
        let app = Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(create_message))
            .with_state(account);
        Ok(Self { addr: serve(app).await?, recorder, callbacks })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// E.164 as Twilio requires it: `+`, a country code that does not start with 0, at most 15
/// digits in all.
fn is_e164(number: &str) -> bool {
    number.strip_prefix('+').is_some_and(|digits| {
        (2..=15).contains(&digits.len())
            && !digits.starts_with('0')
            && digits.chars().all(|c| c.is_ascii_digit())
    })
}

/// The account SID of `start_account`'s account.
const ACCOUNT_SID: &str = "AC00000000000000000000000000standin";

impl TwilioStandIn {
    /// An account of its own (`StandIn`).
    pub async fn start_account() -> anyhow::Result<Self> {
        Self::start(ACCOUNT_SID, "standin-token").await
    }
}

impl StandIn for TwilioStandIn {
    recorded_stand_in!();

    fn settings(&self, secrets: &std::path::Path) -> anyhow::Result<Value> {
        Ok(json!({
            "kind": "twilio",
            "account_sid": ACCOUNT_SID,
            "auth_token": secret_file(secrets, "twilio-auth-token", "standin-token")?,
            "sms": {"from": "+15005550006", "max_segments": 4},
            "base_url": self.base_url(),
        }))
    }
}
