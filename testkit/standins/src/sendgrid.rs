//! SendGrid's v3 mail/send as SendGrid answers: a bearer API key (401), the body checked
//! field by field (400 with `errors[].field`), 429 with `X-RateLimit-Reset`, 5xx outages,
//! 202 with `X-Message-Id` when accepted. Its Event Webhook posts SendGrid-shaped events
//! (with the mail's custom arguments) signed with an ECDSA P-256 key of its own, whose
//! verification key it shows as SendGrid does.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Fault, Recorder, serve};
use crate::{StandIn, recorded_stand_in, secret_file};

/// A mail SendGrid accepted: the request body as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct SendgridMail {
    pub to: String,
    pub body: Value,
}

#[derive(Clone)]
struct Account {
    api_key: String,
    recorder: Recorder<SendgridMail>,
}

pub struct SendgridStandIn {
    addr: SocketAddr,
    recorder: Recorder<SendgridMail>,
    signing_key: ring::signature::EcdsaKeyPair,
    http: reqwest::Client,
}

impl std::fmt::Debug for SendgridStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendgridStandIn").field("addr", &self.addr).finish_non_exhaustive()
    }
}

impl Deref for SendgridStandIn {
    type Target = Recorder<SendgridMail>;
    fn deref(&self) -> &Self::Target {
        &self.recorder
    }
}

fn error(status: StatusCode, field: Option<&str>, message: &str) -> Response {
    let body = json!({"errors": [{"message": message, "field": field, "help": null}]});
    (status, Json(body)).into_response()
}

fn check(body: &Value) -> Result<String, (&'static str, &'static str)> {
    let to = body["personalizations"][0]["to"][0]["email"]
        .as_str()
        .filter(|a| a.contains('@'))
        .ok_or(("personalizations.0.to", "Does not contain a valid address."))?;
    if !body["from"]["email"].as_str().is_some_and(|a| a.contains('@')) {
        return Err(("from.email", "The from email does not contain a valid address."));
    }
    if body["subject"].as_str().is_none_or(str::is_empty) {
        return Err(("subject", "The subject is required."));
    }
    let content = body["content"].as_array().filter(|c| !c.is_empty());
    let Some(content) = content else {
        return Err((
            "content",
            "Unless a valid template_id is provided, the content parameter is required.",
        ));
    };
    if content.len() > 1 && content[0]["type"] != "text/plain" {
        return Err(("content.0.type", "If present, text/plain must be first."));
    }
    Ok(to.to_owned())
}

async fn send(State(account): State<Account>, headers: HeaderMap, body: String) -> Response {
    account.recorder.arrived().await;
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if bearer != Some(format!("Bearer {}", account.api_key).as_str()) {
        return error(
            StatusCode::UNAUTHORIZED,
            None,
            "The provided authorization grant is invalid, expired, or revoked",
        );
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, None, "Bad Request");
    };
    let to = match check(&body) {
        Ok(to) => to,
        Err((field, message)) => return error(StatusCode::BAD_REQUEST, Some(field), message),
    };
    match account.recorder.fault(&to) {
        Some(Fault::Throttled) => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, None, "too many requests");
            let reset = crate::now_millis() / 1000 + 1;
            if let Ok(value) = HeaderValue::from_str(&reset.to_string()) {
                response.headers_mut().insert("x-ratelimit-reset", value);
            }
            return response;
        }
        Some(Fault::Failing) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, None, "Service Unavailable");
        }
        Some(Fault::Dead) => {
            return error(
                StatusCode::BAD_REQUEST,
                Some("personalizations.0.to"),
                "Does not contain a valid address.",
            );
        }
        None => {}
    }
    let n = account.recorder.accept(SendgridMail { to, body });
    let mut response = StatusCode::ACCEPTED.into_response();
    if let Ok(id) = HeaderValue::from_str(&format!("sg{n:020}")) {
        response.headers_mut().insert("x-message-id", id);
    }
    response
}

impl SendgridStandIn {
    pub async fn start(api_key: &str) -> anyhow::Result<Self> {
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
        let recorder = Recorder::default();
        let account = Account { api_key: api_key.to_owned(), recorder: recorder.clone() };
        let app = Router::new().route("/v3/mail/send", post(send)).with_state(account);
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .map_err(|_| anyhow::anyhow!("cannot make a signing key"))?;
        let signing_key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng)
                .map_err(|_| anyhow::anyhow!("cannot read the signing key"))?;
        let http = crate::http_client();
        Ok(Self { addr: serve(app).await?, recorder, signing_key, http })
    }

    /// The key SendGrid shows for verifying its signed Event Webhook: base64 DER
    /// SubjectPublicKeyInfo.
    pub fn verification_key(&self) -> String {
        use base64::Engine as _;
        use ring::signature::KeyPair as _;
        // RFC 5480: SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING point }.
        let algorithm = [
            [0x30, 0x13].as_slice(),
            &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01],
            &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
        ]
        .concat();
        let point = self.signing_key.public_key().as_ref();
        let bits = [&[0x03, 0x42, 0x00][..], point].concat();
        let spki = [&[0x30, 0x59][..], &algorithm, &bits].concat();
        base64::engine::general_purpose::STANDARD.encode(spki)
    }

    /// Posts `events` (delivered, open, click, bounce, ...) about `mail` to `endpoint` as
    /// SendGrid's Event Webhook does; returns the answer's status.
    pub async fn post_events(
        &self,
        endpoint: &str,
        mail: &SendgridMail,
        events: &[&str],
    ) -> anyhow::Result<u16> {
        use base64::Engine as _;
        let now = crate::now_millis() / 1000;
        let custom_args = &mail.body["personalizations"][0]["custom_args"];
        let batch: Vec<Value> = events
            .iter()
            .enumerate()
            .map(|(i, event)| {
                let mut report = json!({
                    "email": mail.to, "timestamp": now, "event": event,
                    "sg_event_id": format!("{}-{event}-{i}", mail.to),
                    "sg_message_id": format!("{}.filter0001", mail.to),
                    "category": mail.body["categories"],
                });
                match *event {
                    "click" => report["url"] = json!("https://shop.example.com/sale"),
                    "bounce" => {
                        report["reason"] = json!("550 5.1.1 The email account does not exist");
                        report["type"] = json!("bounce");
                    }
                    _ => {}
                }
                if let (Some(report), Some(args)) =
                    (report.as_object_mut(), custom_args.as_object())
                {
                    report.extend(args.clone());
                }
                report
            })
            .collect();
        let body = serde_json::to_vec(&batch)?;
        let timestamp = now.to_string();
        let signed = [timestamp.as_bytes(), &body].concat();
        let signature = self
            .signing_key
            .sign(&ring::rand::SystemRandom::new(), &signed)
            .map_err(|_| anyhow::anyhow!("cannot sign"))?;
        let answer = self
            .http
            .post(endpoint)
            .header("Content-Type", "application/json")
            .header(
                "X-Twilio-Email-Event-Webhook-Signature",
                base64::engine::general_purpose::STANDARD.encode(signature.as_ref()),
            )
            .header("X-Twilio-Email-Event-Webhook-Timestamp", timestamp)
            .body(body)
            .send()
            .await?;
        Ok(answer.status().as_u16())
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl SendgridStandIn {
    /// An account of its own (`StandIn`).
    pub async fn start_account() -> anyhow::Result<Self> {
        Self::start("SG.standin").await
    }
}

impl StandIn for SendgridStandIn {
    recorded_stand_in!();

    fn settings(&self, secrets: &Path) -> anyhow::Result<Value> {
        Ok(json!({
            "kind": "sendgrid",
            "api_key": secret_file(secrets, "sendgrid-api-key", "SG.standin")?,
            "default_from": "Herald <noreply@example.com>",
            "base_url": self.base_url(),
        }))
    }
}
