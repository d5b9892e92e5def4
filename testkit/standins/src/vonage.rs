//! Vonage's SMS API as Vonage answers: always HTTP 200 with one entry per part, each with
//! its `status` ("0" sent, "1" throttled, "2" missing parameter, "3" invalid parameter,
//! "4" bad credentials, "5" internal error, "6" unroutable message), `type=unicode`
//! required for texts outside GSM-7.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use serde_json::{Value, json};

use super::{Fault, Recorder, gsm, serve};
use crate::{StandIn, recorded_stand_in, secret_file};

/// An SMS Vonage accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VonageMessage {
    pub to: String,
    pub from: String,
    pub text: String,
    pub unicode: bool,
    pub client_ref: Option<String>,
    pub parts: usize,
}

#[derive(Clone)]
struct Account {
    key: String,
    secret: String,
    recorder: Recorder<VonageMessage>,
}

#[derive(Debug)]
pub struct VonageStandIn {
    addr: SocketAddr,
    recorder: Recorder<VonageMessage>,
}

impl Deref for VonageStandIn {
    type Target = Recorder<VonageMessage>;
    fn deref(&self) -> &Self::Target {
        &self.recorder
    }
}

fn refused(status: &str, error_text: &str) -> Response {
    Json(json!({"message-count": "1", "messages": [{"status": status, "error-text": error_text}]}))
        .into_response()
}

async fn send(State(account): State<Account>, Form(form): Form<Vec<(String, String)>>) -> Response {
    account.recorder.arrived().await;
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    if field("api_key").as_deref() != Some(&account.key)
        || field("api_secret").as_deref() != Some(&account.secret)
    {
        return refused("4", "Bad Credentials");
    }
    let (Some(to), Some(from), Some(text)) = (field("to"), field("from"), field("text")) else {
        return refused("2", "Missing to, from or text param");
    };
    if to.starts_with('+') || to.len() < 8 || !to.chars().all(|c| c.is_ascii_digit()) {
        return refused("3", "Invalid to param");
    }
    let unicode = field("type").as_deref() == Some("unicode");
    let (ucs2, parts) = gsm::parts(&text);
    if ucs2 && !unicode {
        // Vonage would send replacement characters; Herald must ask for unicode.
        return refused("6", "Invalid Message: non-GSM characters without type=unicode");
    }
    match account.recorder.fault(&to) {
        Some(Fault::Throttled) => return refused("1", "Throttled"),
        Some(Fault::Failing) => return refused("5", "Internal Error"),
        Some(Fault::Dead) => return refused("3", "Invalid to param: number barred"),
        None => {}
    }
    let message = VonageMessage {
        to: to.clone(),
        from,
        text,
        unicode,
        client_ref: field("client-ref"),
        parts,
    };
    let n = account.recorder.accept(message);
    let messages: Vec<_> = (0..parts)
        .map(|part| {
            json!({"to": to, "message-id": format!("{n:08X}-{part}"), "status": "0",
                   "remaining-balance": "10.0", "message-price": "0.0333", "network": "00000"})
        })
        .collect();
    Json(json!({"message-count": parts.to_string(), "messages": messages})).into_response()
}

impl VonageStandIn {
    pub async fn start(api_key: &str, api_secret: &str) -> anyhow::Result<Self> {
        let recorder = Recorder::default();
        let account = Account {
            key: api_key.to_owned(),
            secret: api_secret.to_owned(),
            recorder: recorder.clone(),
        };
        let app = Router::new().route("/sms/json", post(send)).with_state(account);
        Ok(Self { addr: serve(app).await?, recorder })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl VonageStandIn {
    /// An account of its own (`StandIn`).
    pub async fn start_account() -> anyhow::Result<Self> {
        Self::start("standin-key", "standin-secret").await
    }
}

impl StandIn for VonageStandIn {
    recorded_stand_in!();

    fn settings(&self, secrets: &Path) -> anyhow::Result<Value> {
        Ok(json!({
            "kind": "vonage",
            "api_key": "standin-key",
            "api_secret": secret_file(secrets, "vonage-api-secret", "standin-secret")?,
            "sms": {"from": "Herald", "max_segments": 4},
            "base_url": self.base_url(),
        }))
    }
}
