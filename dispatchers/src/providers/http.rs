//! What the HTTP providers share: a client (HTTP/2 where the provider speaks it), the
//! `Retry-After` header, and the classification of transport failures.

use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

use super::DeliveryError;

#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for provider {provider}: {reason}")]
pub struct ClientError {
    pub provider: String,
    pub reason: String,
}

/// Why an HTTP provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Secret(#[from] herald_runtime::config::SecretError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0}")]
    Invalid(String),
}

/// A provider's answer: status, headers, and its JSON body (`Null` when it sent none).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    /// `Retry-After`, in seconds or as a date.
    pub fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    }
}

/// Sends `request` and reads the answer; no answer at all is a transient failure.
pub async fn exchange(request: reqwest::RequestBuilder) -> Result<Answer, DeliveryError> {
    let response = request.send().await.map_err(transport_failure)?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap_or(Value::Null);
    Ok(Answer { status, headers, body })
}

/// An HTTP client with `timeout` per request; `http2_only` for APNs, which speaks nothing
/// else (over TLS via ALPN, and with prior knowledge for plain-HTTP stand-ins).
pub fn client(
    provider: &str,
    timeout: Duration,
    http2_only: bool,
) -> Result<reqwest::Client, ClientError> {
    herald_schemas::install_tls_provider();
    let mut builder =
        reqwest::Client::builder().timeout(timeout).pool_idle_timeout(Duration::from_secs(90));
    if http2_only {
        builder = builder.http2_prior_knowledge();
    }
    builder
        .build()
        .map_err(|e| ClientError { provider: provider.to_owned(), reason: e.to_string() })
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate(value)?;
    Some(at.duration_since(std::time::SystemTime::now()).unwrap_or_default())
}

fn httpdate(value: &str) -> Option<std::time::SystemTime> {
    humantime::parse_rfc3339_weak(value).ok().or_else(|| {
        // IMF-fixdate: "Wed, 21 Oct 2015 07:28:00 GMT"
        let parts: Vec<&str> = value.split_whitespace().collect();
        let [_, day, month, year, time, "GMT"] = parts.as_slice() else { return None };
        let months =
            ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        let month = months.iter().position(|m| m == month)? + 1;
        humantime::parse_rfc3339_weak(&format!("{year}-{month:02}-{day:0>2}T{time}Z")).ok()
    })
}

/// A request that got no answer: timeouts and connection failures may work later.
#[allow(clippy::needless_pass_by_value)] // used as `map_err(transport_failure)`
pub fn transport_failure(e: reqwest::Error) -> DeliveryError {
    let what = if e.is_timeout() { "timed out" } else { "failed" };
    // Some providers take their key in the query string: a URL never goes into a reason.
    let e = e.without_url();
    DeliveryError::Transient { reason: format!("request {what}: {e}"), retry_after: None }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(30)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(retry_after(&headers), Some(Duration::ZERO), "a past date means now");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }
}
