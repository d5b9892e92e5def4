//! JPush's push API v3 as JPush answers: basic auth with app key and master secret (1004),
//! the push object checked (1002 missing, 1003 invalid), 1011 for registration ids it does
//! not know, 2002 with 429 and `X-Rate-Limit-Reset` when throttled, 1000 outages; 200 with
//! `sendno` and `msg_id` when accepted.

use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Fault, Recorder, basic_auth_is, serve};
use crate::{StandIn, recorded_stand_in, secret_file};

/// A notification JPush accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct JpushPush {
    pub platform: String,
    pub registration_id: String,
    pub notification: Value,
    pub options: Value,
}

#[derive(Clone)]
struct App {
    key: String,
    secret: String,
    recorder: Recorder<JpushPush>,
}

#[derive(Debug)]
pub struct JpushStandIn {
    addr: SocketAddr,
    recorder: Recorder<JpushPush>,
}

impl Deref for JpushStandIn {
    type Target = Recorder<JpushPush>;
    fn deref(&self) -> &Self::Target {
        &self.recorder
    }
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn push(State(app): State<App>, headers: HeaderMap, body: String) -> Response {
    app.recorder.arrived().await;
    if !basic_auth_is(&headers, &app.key, &app.secret) {
        return error(StatusCode::UNAUTHORIZED, 1004, "Authen failed");
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, 1003, "Invalid json");
    };
    let platform = body["platform"].as_array().and_then(|p| p.first()).and_then(Value::as_str);
    let ids = body["audience"]["registration_id"].as_array();
    let (Some(platform), Some(ids)) = (platform, ids) else {
        return error(StatusCode::BAD_REQUEST, 1002, "Missing parameter platform or audience");
    };
    let Some(registration_id) = ids.first().and_then(Value::as_str).filter(|id| !id.is_empty())
    else {
        return error(StatusCode::BAD_REQUEST, 1003, "audience registration_id has an empty value");
    };
    let notification = &body["notification"][platform];
    if notification["alert"].as_str().is_none() {
        return error(StatusCode::BAD_REQUEST, 1003, "notification alert is required");
    }
    match app.recorder.fault(registration_id) {
        Some(Fault::Throttled) => {
            let mut response =
                error(StatusCode::TOO_MANY_REQUESTS, 2002, "Request times exceeds the limit");
            response.headers_mut().insert("x-rate-limit-reset", HeaderValue::from_static("1"));
            return response;
        }
        Some(Fault::Failing) => {
            return error(StatusCode::INTERNAL_SERVER_ERROR, 1000, "Server internal error");
        }
        Some(Fault::Dead) => {
            return error(StatusCode::BAD_REQUEST, 1011, "cannot find user by this audience");
        }
        None => {}
    }
    let n = app.recorder.accept(JpushPush {
        platform: platform.to_owned(),
        registration_id: registration_id.to_owned(),
        notification: notification.clone(),
        options: body["options"].clone(),
    });
    Json(json!({"sendno": "0", "msg_id": format!("{}", 54_043_196_000_000_000u64 + n as u64)}))
        .into_response()
}

impl JpushStandIn {
    pub async fn start(app_key: &str, master_secret: &str) -> anyhow::Result<Self> {
        let recorder = Recorder::default();
        let app = App {
            key: app_key.to_owned(),
            secret: master_secret.to_owned(),
            recorder: recorder.clone(),
        };
        let router = Router::new().route("/v3/push", post(push)).with_state(app);
        Ok(Self { addr: serve(router).await?, recorder })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl JpushStandIn {
    /// An app of its own (`StandIn`).
    pub async fn start_account() -> anyhow::Result<Self> {
        Self::start("standin-app-key", "standin-master-secret").await
    }
}

impl StandIn for JpushStandIn {
    recorded_stand_in!();

    fn settings(&self, secrets: &Path) -> anyhow::Result<Value> {
        Ok(json!({
            "kind": "jpush",
            "app_key": "standin-app-key",
            "master_secret": secret_file(secrets, "jpush-master-secret", "standin-master-secret")?,
            "apns_production": false,
            "base_url": self.base_url(),
        }))
    }
}
