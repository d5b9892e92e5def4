//! Pushy's send API as Pushy answers: the secret key in the `api_key` query parameter
//! (401 `INVALID_API_KEY`), `to` and `data` required (400 `INVALID_PARAM`), unknown tokens
//! listed in `info.failed` of a 200, 429 `RATE_LIMIT_EXCEEDED`, 500 outages.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::Path;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::{Fault, Recorder, serve};
use crate::{StandIn, recorded_stand_in, secret_file};

/// A push Pushy accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct PushyPush {
    pub to: String,
    pub data: Value,
    pub notification: Value,
    pub time_to_live: Option<u64>,
}

#[derive(Clone)]
struct App {
    api_key: String,
    recorder: Recorder<PushyPush>,
}

#[derive(Debug)]
pub struct PushyStandIn {
    addr: SocketAddr,
    recorder: Recorder<PushyPush>,
}

impl Deref for PushyStandIn {
    type Target = Recorder<PushyPush>;
    fn deref(&self) -> &Self::Target {
        &self.recorder
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"code": code, "error": message}))).into_response()
}

async fn push(
    State(app): State<App>,
    Query(query): Query<HashMap<String, String>>,
    body: String,
) -> Response {
    app.recorder.arrived().await;
    if query.get("api_key") != Some(&app.api_key) {
        return error(
            StatusCode::UNAUTHORIZED,
            "INVALID_API_KEY",
            "The provided API key is invalid.",
        );
    }
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAM",
            "The request body is not valid JSON.",
        );
    };
    let Some(to) = body["to"].as_str().filter(|t| !t.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAM",
            "Please provide the 'to' parameter.",
        );
    };
    if !body["data"].is_object() {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_PARAM",
            "Please provide the 'data' parameter.",
        );
    }
    match app.recorder.fault(to) {
        Some(Fault::Throttled) => {
            return error(
                StatusCode::TOO_MANY_REQUESTS,
                "RATE_LIMIT_EXCEEDED",
                "Rate limit exceeded.",
            );
        }
        Some(Fault::Failing) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_SERVER_ERROR",
                "An internal error occurred.",
            );
        }
        Some(Fault::Dead) => {
            let id = "5ea9b214b47cad768a35f13a";
            return Json(
                json!({"success": true, "id": id, "info": {"devices": 0, "failed": [to]}}),
            )
            .into_response();
        }
        None => {}
    }
    let n = app.recorder.accept(PushyPush {
        to: to.to_owned(),
        data: body["data"].clone(),
        notification: body["notification"].clone(),
        time_to_live: body["time_to_live"].as_u64(),
    });
    Json(json!({"success": true, "id": format!("{n:024x}"), "info": {"devices": 1}}))
        .into_response()
}

impl PushyStandIn {
    pub async fn start(api_key: &str) -> anyhow::Result<Self> {
        let recorder = Recorder::default();
        let app = App { api_key: api_key.to_owned(), recorder: recorder.clone() };
        let router = Router::new().route("/push", post(push)).with_state(app);
        Ok(Self { addr: serve(router).await?, recorder })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl PushyStandIn {
    /// An app of its own (`StandIn`).
    pub async fn start_account() -> anyhow::Result<Self> {
        Self::start("standin-pushy-key").await
    }
}

impl StandIn for PushyStandIn {
    recorded_stand_in!();

    fn settings(&self, secrets: &Path) -> anyhow::Result<Value> {
        Ok(json!({
            "kind": "pushy",
            "api_key": secret_file(secrets, "pushy-api-key", "standin-pushy-key")?,
            "base_url": self.base_url(),
        }))
    }
}
