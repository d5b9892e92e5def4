//! A caller of a running send API, as tests and tools call it.

/// The send API at `api` (its base URL), called with a client of its own.
#[derive(Debug, Clone)]
pub struct SendApi {
    pub api: String,
    pub http: reqwest::Client,
}

/// What an answer is taken as: status, JSON body (`null` when not JSON), headers.
pub type Answer = (u16, serde_json::Value, reqwest::header::HeaderMap);

impl SendApi {
    pub fn new(api: String) -> Self {
        Self { api, http: reqwest::Client::new() }
    }

    /// `POST /v1/notifications` with `key`: status and JSON body.
    pub async fn post(&self, key: Option<&str>, body: &str) -> (u16, serde_json::Value) {
        let (status, body, _) = self.post_with(key, body, &[]).await;
        (status, body)
    }

    /// Like [`SendApi::post`], with extra headers; also returns the answer's headers.
    /// Panics when the API cannot be reached: a test's failure.
    #[allow(clippy::expect_used)]
    pub async fn post_with(
        &self,
        key: Option<&str>,
        body: &str,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .http
            .post(format!("{}/v1/notifications", self.api))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("the send API answers");
        let status = response.status().as_u16();
        let answer_headers = response.headers().clone();
        let body = response.json().await.unwrap_or(serde_json::Value::Null);
        (status, body, answer_headers)
    }

    /// `method path` with `key` and a JSON `body`: status and JSON body (`null` when none).
    #[allow(clippy::expect_used)]
    pub async fn call(
        &self,
        method: reqwest::Method,
        key: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.api)).bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the send API answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// `GET path` with `key`: status and JSON body.
    #[allow(clippy::expect_used)]
    pub async fn get(&self, key: &str, path: &str) -> (u16, serde_json::Value) {
        let request = self.http.get(format!("{}{path}", self.api)).bearer_auth(key);
        let response = request.send().await.expect("the send API answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(serde_json::Value::Null))
    }
}

/// An email to the user `user_id` with a subject and a text body.
pub fn email_body(user_id: &str, subject: &str, text: &str) -> String {
    serde_json::json!({
        "to": [{"user_id": user_id}],
        "from": {"email": "noreply@example.com"},
        "subject": subject,
        "content": [{"type": "text/plain", "value": text}],
    })
    .to_string()
}
